"""Benchmarks: each script prints JSON with its figures and the machine they ran on."""

"""Datasets from recordings: ``twin export lerobot`` (LeRobot v3, per embodiment and pooled on
the canonical skeleton) and ``twin dataset info``."""

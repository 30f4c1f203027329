"""The task plan: time-indexed joint targets, base path and grip that a task compiles to.

The preview compiles and runs it, the dispatch gate stores, checks and sends it, and the hall
emulator's gateways check and follow it: ``model.py`` is the plan and its sampled table,
``checks.py`` what makes a plan fit to send. It knows nothing of physics or sockets.
"""

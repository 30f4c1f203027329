"""The live mirror (``twin live``): telemetry in, the world kept in step, viewers served.

``ingest.py`` is the per-message hot path (route, check, sequence, count) into ``links.py``
(each robot's and crane's newest state, trackers and meters); ``mirror.py`` runs the loop
(sockets, world updates within a time budget, monitors, sinks such as the recorder);
``serve.py`` is its outward face (fan-out updates and events, snapshot and status replies);
``gate.py`` is the seam a command gate (the dispatch room) plugs into.
"""

"""The dispatch gate inside ``twin live --keys``: a previewed plan sent to a robot, or refused.

``checks.py`` holds the conditions (task, robot, preview, live, in sync, stop, plan), each a
pure read of the twin's state; ``gate.py`` serves the CURVE command and control sockets from
the mirror's loop (it plugs into :class:`twin.live.gate.CommandGate`), sends the plan that
passed, and records every request and answer as an event.
"""

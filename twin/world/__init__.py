"""The PyBullet hall: a scene built as bodies you can name, move, query and step.

:class:`World` (``world.py``) owns one PyBullet client in DIRECT mode; ``bodies.py`` makes the
floor, hub, benches, items and panels; ``crane.py`` writes each gantry crane as a URDF so
PyBullet enforces its travel. Every room above that needs physics or kinematics builds on this.
"""

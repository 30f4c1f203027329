"""Failure detection: falls, joints past limits, efforts, stale data, collisions, divergence,
dropped grasps.

``events.py`` says what a failure is and what detectors read of a robot; ``monitors.py``
holds the detectors, run live by the mirror and offline on recordings
(``offline.py``, behind ``twin failures``); ``divergence.py`` is the twin's prediction of a
robot's next joints, which the divergence detector and the replay ghost share.
"""

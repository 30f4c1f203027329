"""Lessons: what one robot's incident teaches every robot, kept durably (``twin lessons``).

:mod:`twin.lessons.derive` makes a lesson of an incident (where, what was measured, a condition
a preview can reproduce); :mod:`twin.lessons.store` keeps them in SQLite, strengthening a
lesson when a second robot meets the same cause at the same step.
"""

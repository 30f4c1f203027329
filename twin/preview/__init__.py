"""Task preview (``twin preview``): run a task file in PyBullet dynamics before it runs on
hardware.

``compile.py`` turns a task into a :class:`twin.plan.model.TaskPlan` (joint targets, base
path, grip; built by ``builder``, ``gait`` and ``hands``); ``engine.py`` runs it in the
dynamic hall (``hall.py``) with its checks and reports a result; ``trials.py`` reruns it under
perturbed reality; ``store.py`` keeps the record of each preview so the dispatch gate can ask
whether exactly this task file passed.
"""

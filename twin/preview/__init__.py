"""Task preview: run a task file in PyBullet dynamics before it runs on hardware.

``plan`` turns a task into a time-indexed plan (joint targets, base path, grip) that both the
preview engine and the hall emulator execute; ``store`` keeps the record of each preview so the
dispatch gate can ask whether exactly this task file passed.
"""

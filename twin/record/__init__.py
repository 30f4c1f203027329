"""Recordings: every accepted message into a self-contained MCAP file, and read back.

Writing: ``recorder.py`` (raw frames plus canonical JSON channels, attachments) on
``mcap_writer.py`` (chunked, compression on a thread), channel schemas in ``schemas.py``;
for the live twin the same recorder in a process of its own, ``recorder_process.py`` (the
mirror's side: frames gathered and shipped) and ``recorder_worker.py`` (the process).
Reading: ``chunks.py`` (the one chunk reader: where chunks lie, each checked, a damaged one
skipped) with ``damage.py`` (what was skipped or cut off, in one line), ``recording.py``
(open, read a cut or damaged file as far as it goes), and the indexed replay source the
viewers, the ghost and re-simulation seek in (``replay_source.py`` with its chunk catalogue,
per-robot index, views and events). It sits below ``viz``, so a viewer reads recordings
without the recording room knowing any viewer.
"""

"""The viewer room (read-only 3D drawing of the hall); built by the viewer issue."""

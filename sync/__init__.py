"""The wire room (messages, codecs, sockets, liveness); built by the live-sync issue."""

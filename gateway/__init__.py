"""The websocket gateway: widget and inbox sockets, JWT auth, per-frame authorization, fan-out."""

"""Free TCP ports on 127.0.0.1 for servers a test starts by port number (a subprocess, a
receiver brought back where it was)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port that was free a moment ago: the caller binds it next (a race is possible, but
    the kernel hands out ephemeral ports round-robin, so it is rare)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

"""Bytes sent to a server as they are, past any HTTP client's own checks, and its whole answer:
for requests no client would send (smuggling shapes, malformed headers)."""

from __future__ import annotations

import socket


def exchange(host: str, port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection; every byte answered until the server closes it."""
    answer = b""
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(request)
        while chunk := connection.recv(65536):
            answer += chunk
    return answer

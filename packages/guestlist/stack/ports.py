"""Loopback ports for the servers the stack runs."""

from __future__ import annotations

import asyncio
import contextlib
import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on right now; the kernel picks it from the ephemeral range."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


async def port_open(port: int, host: str = LOOPBACK, connect_within: float = 1.0) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), connect_within)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True

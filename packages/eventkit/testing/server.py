"""An ASGI app in uvicorn on a free loopback port, for tests and benchmarks.

The socket is bound before the server starts, so there is no race for the
port, and a caller that must hand the URL to another service before this one
exists (a peer's settings) can bind first and serve later.

The socket is created with ``IPPROTO_TCP`` spelled out: asyncio turns on
``TCP_NODELAY`` only for sockets whose ``proto`` says TCP, and a plain
``socket.socket()`` says 0. Without it, uvicorn's separate writes of the
response head and body meet Nagle's algorithm and the client's delayed ACK,
and every answer arrives about 40 ms late.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


def bound_socket() -> tuple[socket.socket, str]:
    """A TCP socket bound to a free port of 127.0.0.1, and the base URL it will serve."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serving(
    app: Any, *, sock: socket.socket | None = None, start_within: float = 120, **config: Any
) -> AsyncIterator[str]:
    """Run ``app`` in uvicorn (on ``sock``, or a fresh one) until the block ends; its base URL.

    ``config`` goes to ``uvicorn.Config`` (e.g. ``lifespan="off"``); logging is
    left to the process's own configuration and the access log is off.
    """
    if sock is None:
        sock, base_url = bound_socket()
    else:
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(
        app, **{"log_config": None, "access_log": False, **config}))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(start_within):
            while not server.started:
                if task.done():
                    task.result()  # its error, if it raised one
                    raise RuntimeError("the server stopped before it started")
                await asyncio.sleep(0.02)
        yield base_url
    finally:
        server.should_exit = True
        await task
        sock.close()

"""The test and benchmark server's socket: answers are not held back by Nagle's algorithm."""

from __future__ import annotations

import asyncio
import socket

import httpx

from eventkit.testing.server import bound_socket, serving


async def test_connections_accepted_on_the_bound_socket_send_without_delay() -> None:
    sock, _ = bound_socket()
    accepted: asyncio.Queue[int] = asyncio.Queue()

    async def on_connection(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("socket")
        accepted.put_nowait(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connection, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection(*sock.getsockname())
        nodelay = await asyncio.wait_for(accepted.get(), timeout=5)
        writer.close()
    assert nodelay != 0


async def test_serving_answers_on_its_url_and_stops_with_the_block() -> None:
    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    async with serving(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/")).text == "ok"
    async with httpx.AsyncClient(base_url=url) as client:
        try:
            await client.get("/")
        except httpx.ConnectError:
            return
    raise AssertionError("the server still answers after its block ended")

"""A loopback TCP proxy in front of a real server, for the faults a process signal cannot make:
a reply lost after the server acted on the request, or one client cut off while the others
still reach the server.

It runs on the test's event loop: a test that waits on something synchronous (starting apps)
must do it in a thread, or the proxy stops forwarding meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass(eq=False)  # each link is itself, so it can sit in a set
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    swallow_reply: bool = False


@dataclass
class TcpProxy:
    upstream_port: int
    _server: asyncio.Server | None = None
    _links: set[_Link] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _drop_matching: bytes | None = None
    _blocked: bool = False
    dropped_replies: int = 0

    @classmethod
    async def start(cls, upstream_port: int) -> TcpProxy:
        proxy = cls(upstream_port)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        return proxy

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def drop_next_reply(self, *, to_request_containing: bytes) -> None:
        """Forward the next request that contains these bytes, let the server act on it, then
        cut the connection instead of passing its reply on (the client sees a reset)."""
        self._drop_matching = to_request_containing

    def block(self) -> None:
        """Cut every connection and refuse new ones: the server is gone for this client."""
        self._blocked = True
        for link in list(self._links):
            self._cut(link)

    def unblock(self) -> None:
        self._blocked = False

    async def close(self) -> None:
        self.block()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blocked:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, link, towards_server=True),
                self._pump(up_reader, link, towards_server=False),
                return_exceptions=True,
            )
        finally:
            self._cut(link)

    async def _pump(
        self, reader: asyncio.StreamReader, link: _Link, *, towards_server: bool
    ) -> None:
        target = link.server if towards_server else link.client
        while chunk := await reader.read(65536):
            if towards_server and self._drop_matching and self._drop_matching in chunk:
                self._drop_matching = None
                link.swallow_reply = True
            elif not towards_server and link.swallow_reply:
                self.dropped_replies += 1
                self._cut(link)
                return
            target.write(chunk)
            await target.drain()

    def _cut(self, link: _Link) -> None:
        self._links.discard(link)
        for writer in (link.client, link.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()

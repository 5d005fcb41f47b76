"""A webhook receiver for the alert tests: an aiohttp server on loopback, in its own thread.

``syncer apply`` runs in the test's thread (it owns its event loop and the signal handlers), so
the receiver serves from a thread of its own. Every request is recorded before it is answered:
when the CLI has returned, what it sent is here. ``answer`` sets the status a path answers
with, ``delay`` makes a path answer late (for the webhook timeout).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the server records, and how it answers."""

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    answer: dict[str, int] = field(default_factory=dict)  # path -> status (default 200)
    delay: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this receiver."""
        return f"{self.base_url}{path}"

    def at(self, path: str) -> list[Received]:
        """The requests received at ``path``, in order."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.requests.append(Received(request.method, request.path, dict(request.headers), body))
        wait = self.delay.get(request.path, 0.0)
        if wait:
            await asyncio.sleep(wait)  # the receiver being slow, not the test waiting
        return web.Response(status=self.answer.get(request.path, 200), text="ok")


@contextmanager
def receiver(start_timeout: float = 10.0) -> Iterator[Receiver]:
    """A running receiver on 127.0.0.1 (any free port), stopped when the block ends."""
    state = Receiver()
    ready = threading.Event()
    errors: list[BaseException] = []
    holder: dict[str, Any] = {}

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", state.handle)
        # A late answer still pending at the end is not waited for long.
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            state.base_url = f"http://127.0.0.1:{port}"
            holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            await runner.cleanup()
            return
        ready.set()
        try:
            await holder["stop"].wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="webhook-receiver", daemon=True)
    thread.start()
    if not ready.wait(start_timeout):
        raise RuntimeError("the webhook receiver did not start in time")
    if errors:
        raise errors[0]
    try:
        yield state
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(start_timeout)

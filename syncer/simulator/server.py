"""Running a simulator: in the current event loop, in a thread of its own, or until Ctrl-C."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from syncer.errors import ConfigError, SyncerError
from syncer.simulator.app import Observer, add_faults, create_app
from syncer.simulator.faults import FaultRule
from syncer.simulator.settings import SimulatorSettings
from syncer.simulator.state import SimState

T = TypeVar("T")


class Simulator:
    """One simulator bound to a loopback port: ``base_url``, live ``state``, control helpers."""

    def __init__(self, settings: SimulatorSettings | None = None, *, on_response: Observer | None = None):
        self.settings = settings or SimulatorSettings()
        self.state = SimState(self.settings)
        self.app = create_app(self.settings, state=self.state, on_response=on_response)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        """Bind and serve; ``base_url`` is set afterwards."""
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise SyncerError(
                f"the simulator cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}"
            ) from exc
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop serving and release the port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def add_faults(self, rules: list[dict[str, Any] | FaultRule]) -> None:
        """Activate fault rules (the JSON form of ``POST /_sim/faults``, or FaultRule)."""
        add_faults(self.state, list(rules))

    def reset(self) -> None:
        """Forget all data, journal, peaks and faults (tokens stay valid)."""
        self.state.reset()

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward and apply what became due."""
        self.state.clock.advance(seconds)
        self.state.tick()

    def snapshot(self) -> dict[str, Any]:
        """The JSON data of ``GET /_sim/state``."""
        return self.state.snapshot()

    async def wait_for(self, predicate: Callable[[SimState], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate(state)`` holds; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                self.state.tick()
                if predicate(self.state):
                    return
                await asyncio.sleep(0.005)


@asynccontextmanager
async def running_simulator(
    settings: SimulatorSettings | None = None, *, on_response: Observer | None = None
) -> AsyncIterator[Simulator]:
    """Serve a simulator in the running event loop for the duration of the block."""
    sim = Simulator(settings, on_response=on_response)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


class SimulatorThread:
    """A simulator on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        *,
        on_response: Observer | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.sim = Simulator(settings, on_response=on_response)
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="syncer-simulator", daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.sim.base_url

    @property
    def state(self) -> SimState:
        """The live state; its methods lock, so they are safe from this thread."""
        return self.sim.state

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.sim.start()
        except BaseException as exc:  # handed to the starting thread, which raises it
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.sim.stop()

    def start(self) -> None:
        """Start the thread and wait until the simulator listens."""
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise SyncerError("the simulator thread did not start in time")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop the simulator and join its thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self._start_timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the simulator's loop and return its result."""
        if self._loop is None:
            raise SyncerError("the simulator thread is not running")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self._start_timeout)

    def add_faults(self, rules: list[dict[str, Any] | FaultRule]) -> None:
        """Activate fault rules."""
        self.sim.add_faults(rules)

    def reset(self) -> None:
        """Forget all data, journal, peaks and faults."""
        self.sim.reset()

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward."""
        self.sim.advance(seconds)

    def snapshot(self) -> dict[str, Any]:
        """The JSON data of ``GET /_sim/state``."""
        return self.sim.snapshot()

    def wait_for(self, predicate: Callable[[SimState], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate(state)`` holds; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()  # never set: wait() is an interruptible short pause
        while True:
            with self.state.locked():
                self.state.tick()
                if predicate(self.state):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the simulator did not reach the expected state in time")
            pause.wait(0.005)

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def serve_forever(settings: SimulatorSettings, on_ready: Callable[[Simulator], None]) -> None:
    """Serve until cancelled (Ctrl-C); ``on_ready`` is called once the port is bound."""
    async with running_simulator(settings) as sim:
        on_ready(sim)
        await asyncio.Event().wait()


def load_users(path: Path) -> frozenset[str]:
    """Learner mails from a file, one a line (blank lines and ``#`` comments skipped)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.single(str(path), None, None, f"cannot read the users file: {exc}") from exc
    mails: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        mail = line.strip()
        if not mail or mail.startswith("#"):
            continue
        if "@" not in mail or " " in mail:
            raise ConfigError.single(str(path), number, None, f"{mail!r} is not a mail address")
        mails.add(mail.lower())
    return frozenset(mails)

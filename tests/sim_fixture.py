"""Shared simulator fixtures and the conformance check every test runs under.

Loaded by ``tests/conftest.py`` (``pytest_plugins``). The autouse ``_sim_conformance`` fixture
listens to every simulator started in this process (``syncer.simulator.add_observer``) and
fails the test when a response does not match the official OpenAPI response schema for its
path, method and status, or uses a status the endpoint does not declare, unless the simulator
labelled it as an undocumented choice or an injected fault.

Fixtures: ``sim_settings`` (fast defaults; override it in a test module), ``sim`` (async,
a running ``Simulator``) and ``sim_thread`` (sync, a running ``SimulatorThread``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from syncer.simulator import (
    Exchange,
    Simulator,
    SimulatorSettings,
    SimulatorThread,
    add_observer,
    remove_observer,
    running_simulator,
)
from tests.openapi import referee

_DOC_OF = {"/api/v2/bulk/": "bulk", "/api/v2/": "core"}
_LOCATION = re.compile(r"^https?://[^/]+/api/v2/bulk/operations/[a-fA-F0-9]{24}$")
_LINK = re.compile(r'^<(https?://[^>]+[?&]next=[^>&]+)>; rel="next"$')


def _doc(route: str) -> str:
    return next(doc for prefix, doc in _DOC_OF.items() if route.startswith(prefix))


def check_exchange(exchange: Exchange) -> list[str]:
    """What is wrong with one simulator response against the official documents (empty: fine)."""
    where = f"{exchange.method} {exchange.path} -> {exchange.status}"
    if exchange.undocumented:
        # A labelled choice: it need only be a JSON error in one of the two documented shapes.
        try:
            body = json.loads(exchange.body)
        except ValueError:
            return [f"{where}: labelled response ({exchange.undocumented}) is not JSON"]
        error = body.get("error") if isinstance(body, dict) else None
        structured = isinstance(error, dict) and {"code", "message"} <= set(error)
        if not (isinstance(error, str) or structured):
            return [f"{where}: labelled response has neither error shape: {body!r}"]
        return []
    if exchange.route is None:
        return [f"{where}: no documented route answered, and the response is not labelled"]
    doc = _doc(exchange.route)
    try:
        validator = referee.response(doc, exchange.route, exchange.method.lower(), exchange.status)
    except KeyError as exc:
        return [f"{where}: {exc.args[0]}"]
    if validator is None:
        problems = [] if not exchange.body else [f"{where}: body must be empty, got {exchange.body[:80]!r}"]
        if exchange.status == 202 and not _LOCATION.match(exchange.headers.get("Location", "")):
            problems.append(f"{where}: Location must be an absolute operation URL")
        return problems
    try:
        body = json.loads(exchange.body)
    except ValueError:
        return [f"{where}: body is not JSON: {exchange.body[:80]!r}"]
    problems = [
        f"{where}: {'/'.join(map(str, err.absolute_path)) or '<body>'}: {err.message}"
        for err in validator.iter_errors(body)
    ]
    link = exchange.headers.get("Link")
    if link is not None and not _LINK.match(link):
        problems.append(f"{where}: malformed Link header {link!r}")
    return problems


@pytest.fixture(autouse=True)
def _sim_conformance() -> Iterator[list[str]]:
    """Fail the test when any simulator response breaks the official documents."""
    problems: list[str] = []

    def observe(exchange: Exchange) -> None:
        problems.extend(check_exchange(exchange))

    add_observer(observe)
    try:
        yield problems
    finally:
        remove_observer(observe)
    if problems:
        pytest.fail("simulator responses break the official API documents:\n" + "\n".join(problems[:20]))


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    """Fast defaults for tests: operations end in 50 ms, no rate limit."""
    return SimulatorSettings(op_seconds=0.05, write_rate=None, read_rate=None)


@pytest.fixture
async def sim(sim_settings: SimulatorSettings) -> AsyncIterator[Simulator]:
    """A running simulator on a free loopback port."""
    async with running_simulator(sim_settings) as running:
        yield running


@pytest.fixture
def sim_thread(sim_settings: SimulatorSettings) -> Iterator[SimulatorThread]:
    """A running simulator in its own thread, for synchronous tests (CLI, --simulate)."""
    with SimulatorThread(sim_settings) as running:
        yield running

"""Fixtures of the refresh tests: the apply project (tests/e2e/apply) and the platform "by hand".

``by_hand(sim, method, path, body)`` calls the simulator's API as a person or another tool
would (the platform's own endpoints, with a token of the project's credential): archiving a
course, deleting an integration.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import orjson

from syncer.simulator import SimulatorThread
from tests.e2e.apply.conftest import (  # noqa: F401  (fixtures used by the tests here)
    CLIENT_ID,
    SECRET,
    Project,
    _reset_syncer_logger,
    make_project,
    make_sim,
    project,
    sim_settings,
)


def by_hand(sim: SimulatorThread, method: str, path: str, body: Any = None) -> Any:
    """One call of the platform's API with a fresh token, as a person's tool would make it."""
    token = _call(sim, "POST", "/api/v2/oauth2/token", {
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
    }, token=None)["access_token"]  # fmt: skip
    return _call(sim, method, path, body, token=token)


def _call(sim: SimulatorThread, method: str, path: str, body: Any, *, token: str | None) -> Any:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token is not None:
        headers |= {"Authorization": f"Bearer {token}", "360-api-version": "v2.0"}
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(sim.base_url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return orjson.loads(raw) if raw else None


def control(sim: SimulatorThread, action: str, body: Any) -> Any:
    """A control action of the simulator (``/_sim/...``): a learner launches a course, users appear."""
    request = urllib.request.Request(
        f"{sim.base_url}/_sim/{action}",
        data=orjson.dumps(body),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())

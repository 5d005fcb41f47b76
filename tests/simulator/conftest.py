"""Helpers for the simulator's own tests: an HTTP caller that speaks the documented protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from syncer.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Simulator

COMPANY = "5f0c0c0c0c0c0c0c0c0c0c0c"
INTEGRATION = "507f1f77bcf86cd799439011"


@dataclass
class Answer:
    """One HTTP answer: status, decoded JSON (or None), headers and raw body."""

    status: int
    json: Any
    headers: dict[str, str]
    raw: bytes


class Api:
    """Calls a simulator the way a documented client would (token, version header, JSON)."""

    def __init__(self, session: aiohttp.ClientSession, sim: Simulator) -> None:
        self.session = session
        self.sim = sim
        self.token: str | None = None

    async def fetch_token(self, client_id: str = DEMO_CLIENT_ID, secret: str = DEMO_CLIENT_SECRET) -> str:
        answer = await self.call(
            "POST",
            "/api/v2/oauth2/token",
            json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
            auth=False,
        )
        assert answer.status == 200, answer.json
        return str(answer.json["access_token"])

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        version: bool = True,
        params: Any = None,
    ) -> Answer:
        sent: dict[str, str] = {}
        if auth:
            if self.token is None:
                self.token = await self.fetch_token()
            sent["Authorization"] = f"Bearer {self.token}"
        if version and path != "/api/v2/oauth2/token":
            sent["360-api-version"] = "v2.0"
        sent.update(headers or {})
        url = path if path.startswith("http") else self.sim.base_url + path
        async with self.session.request(
            method, url, json=json, data=data, headers=sent, params=params
        ) as resp:
            raw = await resp.read()
            try:
                decoded = await resp.json(content_type=None) if raw else None
            except ValueError:
                decoded = None
            return Answer(resp.status, decoded, dict(resp.headers), raw)

    async def submit(self, method: str, kind: str, items: list[Any], integration: str = INTEGRATION) -> str:
        """Submit a bulk batch; return the operation id."""
        answer = await self.call(
            method, f"/api/v2/bulk/integrations/{integration}/{kind}", json={"input": items}
        )
        assert answer.status == 202, answer.json
        return answer.headers["Location"].rsplit("/", 1)[1]

    async def finish(self, op_id: str) -> list[dict[str, Any]]:
        """Let an operation end (advancing the clock) and return its results."""
        self.sim.advance(self.sim.settings.op_seconds + 0.001)
        answer = await self.call("GET", f"/api/v2/bulk/operations/{op_id}/results")
        assert answer.status == 200, answer.json
        return list(answer.json)


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Api]:
    """An Api bound to the test's simulator, with the demo integration present."""
    sim.state.add_integration(
        _id=INTEGRATION,
        externalPlatform="Acme Academy",
        groupId="5f0c0c0c0c0c0c0c0c0c0c01",
        authorId="5f0c0c0c0c0c0c0c0c0c0c02",
        company_id=COMPANY,
    )
    async with aiohttp.ClientSession() as session:
        yield Api(session, sim)


def course(external_id: str, **extra: Any) -> dict[str, Any]:
    """A valid ExternalCourseDTO item."""
    return {
        "externalId": external_id,
        "name": f"Course {external_id}",
        "launchUrl": f"https://acme.example/launch/{external_id}",
        "defaultLang": "en",
        "sources": [{"name": "Acme"}],
        "subjects": ["safety"],
        **extra,
    }


def stat(
    external_id: str, mail: str, first: str, last: str, progress: float = 50, **extra: Any
) -> dict[str, Any]:
    """A valid ImportExternalStatisticsDTO item."""
    return {
        "courseIdentifier": {"type": "externalId", "value": external_id},
        "userIdentifier": {"type": "mail", "value": mail},
        "progress": progress,
        "timeSpent": 60000,
        "firstActivityAt": first,
        "lastActivityAt": last,
        **extra,
    }

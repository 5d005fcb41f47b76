"""Groups and authors: any well-formed id exists by default; modelled, only the declared ones do."""

from __future__ import annotations

import pytest

from syncer.simulator import SimulatorSettings
from tests.simulator.conftest import Api

GROUP, AUTHOR, OTHER = "64b7f0c2a1e4d5f6a7b8c9d0", "64b7f0c2a1e4d5f6a7b8c9d1", "64b7f0c2a1e4d5f6a7b8c9ff"
BODY = {"externalPlatform": "Doctor Academy", "groupId": GROUP, "authorId": AUTHOR}
MODELLED = SimulatorSettings(op_seconds=0.05, groups=frozenset({OTHER}), authors=frozenset({OTHER}))


async def test_not_modelled_every_well_formed_id_exists(api: Api) -> None:
    group = await api.call("GET", f"/api/v2/groups/{GROUP.upper()}")
    assert (group.status, group.json) == (200, {"_id": GROUP, "name": f"Group {GROUP}", "public": False})
    author = await api.call("GET", f"/api/v2/users/{AUTHOR}")
    assert (author.status, author.json) == (200, {"_id": AUTHOR, "status": "active", "lang": "en"})
    for path, code in (("/api/v2/groups/nothex", "groupNotFound"), ("/api/v2/users/nothex", "userNotFound")):
        answer = await api.call("GET", path)
        assert (answer.status, answer.json["error"]["code"]) == (404, code)
    assert (await api.call("POST", "/api/v2/integrations", json=BODY)).status == 201


@pytest.mark.parametrize("sim_settings", [MODELLED], ids=["modelled"])
async def test_modelled_unknown_group_or_author_is_refused_until_declared(api: Api) -> None:
    assert (await api.call("GET", f"/api/v2/groups/{OTHER}")).status == 200
    missing = await api.call("GET", f"/api/v2/groups/{GROUP}")
    assert (missing.status, missing.json["error"]["code"]) == (404, "groupNotFound")
    created = await api.call("POST", "/api/v2/integrations", json=BODY)
    assert (created.status, created.json["error"]["code"]) == (404, "groupNotFound")
    created = await api.call("POST", "/api/v2/integrations", json={**BODY, "groupId": OTHER})
    assert (created.status, created.json["error"]["code"]) == (404, "userNotFound")

    declared = await api.call(
        "POST", "/_sim/groups", json={"groups": [GROUP], "authors": [AUTHOR]}, auth=False
    )
    assert declared.json == {"groups": sorted([GROUP, OTHER]), "authors": sorted([AUTHOR, OTHER])}
    assert (await api.call("GET", f"/api/v2/users/{AUTHOR}")).status == 200
    created = await api.call("POST", "/api/v2/integrations", json=BODY)
    assert created.status == 201
    moved = await api.call("PATCH", f"/api/v2/integrations/{created.json['_id']}", json={"groupId": "a" * 24})
    assert (moved.status, moved.json["error"]["code"]) == (404, "groupNotFound")


@pytest.mark.parametrize(
    "body",
    [[GROUP], {"groups": GROUP}, {"groups": ["nothex"]}, {"teams": [GROUP]}],
    ids=["list", "not-a-list", "malformed-id", "unknown-key"],
)
async def test_declaring_refuses_malformed_bodies(api: Api, body: object) -> None:
    answer = await api.call("POST", "/_sim/groups", json=body, auth=False, version=False)
    assert answer.status == 400


async def test_learners_are_users_by_id(api: Api) -> None:
    added = await api.call(
        "POST", "/_sim/users", json=[{"mail": "ann@acme.example"}], auth=False, version=False
    )
    user = await api.call("GET", f"/api/v2/users/{added.json[0]['_id']}")
    assert user.json == added.json[0]

"""Integrations: create, list with filters and Link pagination, patch, delete, get a course."""

from __future__ import annotations

import pytest

from tests.simulator.conftest import INTEGRATION, Api, course

GROUP = "6a0000000000000000000001"
AUTHOR = "6a0000000000000000000002"


def body(platform: str, group: str = GROUP, **extra: object) -> dict[str, object]:
    return {"externalPlatform": platform, "groupId": group, "authorId": AUTHOR, **extra}


async def test_create_returns_201_with_id(api: Api) -> None:
    answer = await api.call("POST", "/api/v2/integrations", json=body("Udemy", defaultProgress=10))
    assert answer.status == 201
    assert answer.json["externalPlatform"] == "Udemy" and answer.json["defaultProgress"] == 10
    assert len(answer.json["_id"]) == 24


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        pytest.param(
            body("Acme Academy", "5f0c0c0c0c0c0c0c0c0c0c01"), 400, "duplicateExternalPlatform", id="duplicate"
        ),
        pytest.param(body("360Learning"), 400, "reservedPlatformName", id="reserved"),
        pytest.param({"externalPlatform": "X"}, 400, "invalidInput", id="missing-fields"),
        pytest.param(body("X", defaultProgress=101), 400, "invalidInput", id="out-of-range"),
        pytest.param(body("X", groupId="zz"), 400, "invalidInput", id="bad-object-id"),
        pytest.param(body("X", colour="red"), 400, "invalidInput", id="unknown-property"),
    ],
)
async def test_create_errors(api: Api, payload: dict[str, object], status: int, code: str) -> None:
    answer = await api.call("POST", "/api/v2/integrations", json=payload)
    assert answer.status == status
    assert answer.json["error"]["code"] == code


async def test_same_platform_in_another_group_is_fine(api: Api) -> None:
    answer = await api.call("POST", "/api/v2/integrations", json=body("Acme Academy"))
    assert answer.status == 201


async def test_list_pages_by_100_with_a_next_link_that_keeps_filters(api: Api) -> None:
    for index in range(150):
        api.sim.state.add_integration(externalPlatform=f"P{index % 3}", groupId=f"{index:024x}")
    seen: list[str] = []
    pages = 0
    url = "/api/v2/integrations"
    params: dict[str, str] | None = {"externalPlatform[ne]": "P0"}
    while url:
        answer = await api.call("GET", url, params=params)
        assert answer.status == 200
        seen += [item["externalPlatform"] for item in answer.json]
        pages += 1
        link = answer.headers.get("Link")
        url = link[1 : link.index(">")] if link else ""
        params = None
    assert pages == 2
    assert len(seen) == 101  # Acme Academy + 100 of P1/P2
    assert "P0" not in seen


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"externalPlatform[eq]": "P1"}, {"P1"}, id="eq"),
        pytest.param([("externalPlatform[in]", "P1"), ("externalPlatform[in]", "P2")], {"P1", "P2"}, id="in"),
        pytest.param(
            [("externalPlatform[nin]", "P1"), ("externalPlatform[nin]", "Acme Academy")], {"P2"}, id="nin"
        ),
    ],
)
async def test_list_filters(api: Api, params: object, expected: set[str]) -> None:
    for name in ("P1", "P2"):
        api.sim.state.add_integration(externalPlatform=name)
    answer = await api.call("GET", "/api/v2/integrations", params=params)
    assert {item["externalPlatform"] for item in answer.json} == expected


async def test_list_refuses_unknown_filters_and_bad_cursors(api: Api) -> None:
    assert (await api.call("GET", "/api/v2/integrations", params={"platform": "x"})).status == 400
    assert (await api.call("GET", "/api/v2/integrations", params={"next": "garbage"})).status == 400


async def test_patch_and_delete(api: Api) -> None:
    path = f"/api/v2/integrations/{INTEGRATION}"
    patched = await api.call("PATCH", path, json={"defaultCompletion": True})
    assert patched.status == 200 and patched.json["defaultCompletion"] is True
    assert (await api.call("PATCH", path, json={"defaultProgress": "x"})).status == 400
    op = await api.submit("PUT", "courses", [course("c1")])
    await api.finish(op)
    assert (await api.call("DELETE", path)).status == 204
    assert api.sim.snapshot()["courses"][0]["status"] == "archived"
    gone = await api.call("DELETE", path)
    assert (gone.status, gone.json["error"]["code"]) == (404, "integrationNotFound")
    assert (await api.call("PATCH", path, json={})).status == 404


async def test_get_external_course(api: Api) -> None:
    await api.finish(await api.submit("PUT", "courses", [course("c1")]))
    answer = await api.call("GET", f"/api/v2/integrations/{INTEGRATION}/courses/c1")
    assert answer.status == 200
    assert answer.json["authorId"] == "5f0c0c0c0c0c0c0c0c0c0c02"
    assert answer.json["translations"] == [] and len(answer.json["courseId"]) == 24
    unknown = await api.call("GET", f"/api/v2/integrations/{INTEGRATION}/courses/nope")
    assert (unknown.status, unknown.json["error"]["code"]) == (400, "courseNotBelongToIntegration")
    missing = await api.call("GET", f"/api/v2/integrations/{'0' * 24}/courses/c1")
    assert missing.status == 404

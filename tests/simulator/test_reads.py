"""The read endpoints: courses, course statistics and users (filters, pages of 500, scopes,
rate), the course archive switch, and the control actions that add users and launch courses."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.simulator import ALL_SCOPES, SimClient, SimState, SimulatorSettings
from tests.openapi.referee import facts
from tests.simulator.conftest import INTEGRATION, Api, course, stat

COURSES = "/api/v2/courses"
STATS = "/api/v2/courses/stats"
USERS = "/api/v2/users"
GROUP = "5f0c0c0c0c0c0c0c0c0c0c01"
AUTHOR = "5f0c0c0c0c0c0c0c0c0c0c02"
DAY = "2025-01-01T"


async def pages(api: Api, path: str, params: Any = None) -> list[list[dict[str, Any]]]:
    """Every page of a list, following its Link headers (which carry the filters)."""
    found = []
    url = path
    while url:
        answer = await api.call("GET", url, params=params)
        assert answer.status == 200, answer.json
        found.append(answer.json)
        link = answer.headers.get("Link")
        url, params = (link[1 : link.index('>; rel="next"')] if link else ""), None
    return found


async def listed(api: Api, path: str, params: Any = None) -> list[dict[str, Any]]:
    return [item for page in await pages(api, path, params) for item in page]


async def control(api: Api, action: str, body: Any) -> Any:
    answer = await api.call("POST", f"/_sim/{action}", json=body, auth=False, version=False)
    assert answer.status in (200, 201), answer.json
    return answer.json


async def imported(api: Api, *courses: dict[str, Any], integration: str = INTEGRATION) -> dict[str, str]:
    """Import courses; return externalId -> course id."""
    results = await api.finish(await api.submit("PUT", "courses", list(courses), integration))
    return {item["input"]["externalId"]: item["resourceId"] for item in results}


async def stats(api: Api, *items: dict[str, Any]) -> list[dict[str, Any]]:
    results = await api.finish(await api.submit("POST", "stats", list(items)))
    assert [r["status"] for r in results] == ["success"] * len(items), results
    return results


# -- scopes --------------------------------------------------------------------------------

SERVED = [
    (method.lower(), path, scope)
    for doc in facts().values()
    for path, item in doc["paths"].items()
    for method, operation in item.items()
    for scope in operation["scopes"]
]
CLIENTS = tuple(
    client
    for scope in sorted(ALL_SCOPES)
    for client in (
        SimClient(client_id=f"without {scope}", client_secret="s", scopes=ALL_SCOPES - {scope}),
        SimClient(client_id=f"only {scope}", client_secret="s", scopes=frozenset({scope})),
    )
)


def served_routes(api: Api) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in api.sim.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
    }


def test_extract_scopes_are_one_per_operation_and_the_token_needs_none() -> None:
    for doc in facts().values():
        for path, item in doc["paths"].items():
            for method, operation in item.items():
                expected = 0 if path == "/api/v2/oauth2/token" else 1
                assert len(operation["scopes"]) == expected, (method, path)


@pytest.mark.parametrize(
    "sim_settings",
    [SimulatorSettings(op_seconds=0.05, clients=CLIENTS, read_rate=None, write_rate=None)],
    ids=["clients"],
)
async def test_every_route_requires_the_scope_of_the_extract(api: Api) -> None:
    routes = served_routes(api)
    scopes = {(method, path): scope for method, path, scope in SERVED}
    assert routes - set(scopes) == {("post", "/api/v2/oauth2/token")}  # every other route has a scope
    assert {scopes[route] for route in routes - {("post", "/api/v2/oauth2/token")}} == ALL_SCOPES
    for method, path in sorted(routes - {("post", "/api/v2/oauth2/token")}):
        ids = {
            name: "0" * 24 for name in ("integrationId", "bulkOperationId", "courseId", "userId", "groupId")
        }
        url = path.format(externalId="x", **ids)
        body = {} if method in ("post", "put", "patch") else None
        for client, refused in (
            (f"without {scopes[method, path]}", True),
            (f"only {scopes[method, path]}", False),
        ):
            api.token = await api.fetch_token(client, "s")
            answer = await api.call(method.upper(), url, json=body)
            assert (answer.status == 403) is refused, (client, method, path, answer.status, answer.json)
            if refused:
                assert answer.json["error"]["code"] == "invalid_scope"


@pytest.mark.parametrize(
    "sim_settings", [SimulatorSettings(op_seconds=0.05, write_rate=None, read_rate=3)], ids=["read-rate"]
)
async def test_read_endpoints_count_against_the_read_rate(api: Api) -> None:
    assert [(await api.call("GET", path)).status for path in (COURSES, STATS, USERS)] == [200] * 3
    refused = await api.call("GET", COURSES)
    assert (refused.status, refused.json) == (429, {"error": "tooManyRequests"})
    put = await api.call("PUT", f"{COURSES}/{'0' * 24}/archive", json={"archived": True})
    assert put.status == 404  # a write: not counted against the read rate
    api.sim.advance(1.01)
    assert (await api.call("GET", USERS)).status == 200


@pytest.mark.parametrize(
    "sim_settings", [SimulatorSettings(op_seconds=0.05, write_rate=1, read_rate=None)], ids=["write-rate"]
)
async def test_the_archive_switch_counts_against_the_write_rate(api: Api) -> None:
    path = f"{COURSES}/{'0' * 24}/archive"
    assert (await api.call("PUT", path, json={"archived": True})).status == 404
    refused = await api.call("PUT", path, json={"archived": True})
    assert (refused.status, refused.json) == (429, {"error": "tooManyRequests"})
    assert (await api.call("GET", COURSES)).status == 200


# -- courses -------------------------------------------------------------------------------


async def test_courses_are_listed_as_course_dto(api: Api) -> None:
    translated = {"lang": "fr", "translatedFields": {"name": "Cours", "launchUrl": "https://x.fr"}}
    ids = await imported(
        api, course("c1", defaultLang="fr"), course("c2", authorId="6" * 24, translations=[translated])
    )
    first, second = await listed(api, COURSES)
    now = api.sim.snapshot()["courses"][0]["createdAt"]
    assert first == {
        "_id": ids["c1"],
        "name": "Course c1",
        "sourceLang": "fr",
        "defaultLang": "fr",
        "authorId": AUTHOR,
        "groupId": GROUP,
        "coAuthorIds": [],
        "createdAt": now,
        "modifiedAt": now,
        "status": "published",
        "translations": [],
        "type": "external",
        "externalPlatform": "Acme Academy",
    }
    assert second["_id"] == ids["c2"] and second["authorId"] == "6" * 24
    assert second["translations"] == [
        {"lang": "fr", "published": True, "translatorIds": [], "translatedFields": {"name": "Cours"}}
    ]


async def test_another_companys_courses_and_attempts_are_not_listed(api: Api) -> None:
    await imported(api, course("c1"))
    await stats(api, stat("c1", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z"))
    api.sim.state.integration_company[INTEGRATION] = "f" * 24  # the integration is another company's
    assert await listed(api, COURSES) == [] and await listed(api, STATS) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"status[eq]": "published"}, ["c1", "c3"], id="status-published"),
        pytest.param({"status[eq]": "archived"}, ["c2"], id="status-archived"),
        pytest.param({"status[eq]": "deleted"}, [], id="status-deleted"),
        pytest.param({"type[eq]": "external"}, ["c1", "c2", "c3"], id="type-external"),
        pytest.param({"type[eq]": "native"}, [], id="type-native"),
        pytest.param({"groupId[eq]": GROUP.upper()}, ["c1", "c2", "c3"], id="group"),
        pytest.param({"groupId[eq]": "0" * 24}, [], id="other-group"),
        pytest.param({"authorId[eq]": "6" * 24}, ["c3"], id="author"),
        pytest.param({"originalAuthorId[eq]": AUTHOR}, ["c1", "c2"], id="original-author"),
        pytest.param({"sourceLang[eq]": "fr"}, ["c3"], id="lang-eq"),
        pytest.param([("sourceLang[in]", "fr"), ("sourceLang[in]", "en")], ["c1", "c2", "c3"], id="lang-in"),
        pytest.param({"tagIds[in]": "0" * 24}, [], id="tags"),
        pytest.param({"coAuthorIds[in]": AUTHOR}, [], id="co-authors"),
        pytest.param({"collaborativeLearning[eq]": "false"}, ["c1", "c2", "c3"], id="not-collaborative"),
        pytest.param({"collaborativeLearning[eq]": "true"}, [], id="collaborative"),
        pytest.param({"status[eq]": "published", "sourceLang[eq]": "en"}, ["c1"], id="combined"),
    ],
)
async def test_course_filters(api: Api, params: Any, expected: list[str]) -> None:
    ids = await imported(api, course("c1"), course("c2"), course("c3", authorId="6" * 24, defaultLang="fr"))
    await api.finish(await api.submit("DELETE", "courses", [{"externalId": "c2"}]))
    names = {course_id: external for external, course_id in ids.items()}
    assert [names[item["_id"]] for item in await listed(api, COURSES, params)] == expected


async def test_course_time_filters(api: Api) -> None:
    await imported(api, course("old"))
    api.sim.advance(5)
    await imported(api, course("new"))
    api.sim.advance(5)
    await api.finish(await api.submit("DELETE", "courses", [{"externalId": "old"}]))
    snapshot = {c["externalId"]: c for c in api.sim.snapshot()["courses"]}
    cut = snapshot["new"]["createdAt"][:19] + ".999Z"  # milliseconds are forced to 0

    async def names(params: dict[str, str]) -> list[str]:
        return [item["name"] for item in await listed(api, COURSES, params)]

    assert await names({"createdAt[gte]": cut}) == ["Course new"]
    assert await names({"createdAt[lt]": cut}) == ["Course old"]
    assert await names({"modifiedAt[gte]": snapshot["old"]["modifiedAt"]}) == ["Course old"]
    assert snapshot["old"]["modifiedAt"] > snapshot["old"]["createdAt"]


async def test_courses_page_by_500_and_the_next_link_keeps_the_filters(api: Api) -> None:
    await imported(api, *[course(f"c{n:04d}") for n in range(1201)])
    await api.finish(
        await api.submit("DELETE", "courses", [{"externalId": f"c{n:04d}"} for n in range(0, 1201, 3)])
    )
    found = await pages(api, COURSES, {"status[eq]": "published"})
    assert [len(page) for page in found] == [500, 300]
    names = [item["name"] for page in found for item in page]
    assert names == [f"Course c{n:04d}" for n in range(1201) if n % 3]  # oldest first
    assert [len(page) for page in await pages(api, COURSES)] == [500, 500, 201]


async def test_a_deleted_integrations_courses_list_archived_and_a_new_one_gets_new_ids(api: Api) -> None:
    before = await imported(api, course("c1"), course("c2"))
    assert (await api.call("DELETE", f"/api/v2/integrations/{INTEGRATION}")).status == 204
    listed_after = await listed(api, COURSES)
    assert [(item["_id"], item["status"]) for item in listed_after] == [
        (before["c1"], "archived"),
        (before["c2"], "archived"),
    ]
    assert {item["groupId"] for item in listed_after} == {GROUP}  # the deleted integration's group
    again = await api.call(
        "POST",
        "/api/v2/integrations",
        json={"externalPlatform": "Acme Academy", "groupId": GROUP, "authorId": AUTHOR},
    )
    assert again.status == 201
    after = await imported(api, course("c1"), integration=again.json["_id"])
    assert after["c1"] not in before.values()
    statuses = {item["_id"]: item["status"] for item in await listed(api, COURSES)}
    assert statuses == {before["c1"]: "archived", before["c2"]: "archived", after["c1"]: "published"}


# -- archive switch ------------------------------------------------------------------------


async def test_archive_and_restore_by_hand(api: Api) -> None:
    ids = await imported(api, course("c1"))
    path = f"{COURSES}/{ids['c1'].upper()}/archive"
    api.sim.advance(2)
    archived = await api.call("PUT", path, json={"archived": True})
    assert archived.status == 200
    assert (archived.json["_id"], archived.json["status"]) == (ids["c1"], "archived")
    assert archived.json["modifiedAt"] > archived.json["createdAt"]
    refused = await api.finish(
        await api.submit("POST", "stats", [stat("c1", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z")])
    )
    assert refused[0]["status"] == "error" and "is archived" in refused[0]["errorMessage"]
    again = await api.call("PUT", path, json={"archived": True})
    assert again.json["modifiedAt"] == archived.json["modifiedAt"]  # no change, no new modifiedAt
    restored = await api.call("PUT", path, json={"archived": False})
    assert (restored.status, restored.json["status"]) == (200, "published")
    await stats(api, stat("c1", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z"))


@pytest.mark.parametrize(
    ("course_id", "body", "status", "code"),
    [
        pytest.param("0" * 24, {"archived": True}, 404, "courseNotFound", id="unknown"),
        pytest.param("nope", {"archived": True}, 404, "courseNotFound", id="malformed"),
        pytest.param(None, {}, 400, "invalidInput", id="missing-archived"),
        pytest.param(None, {"archived": "yes"}, 400, "invalidInput", id="not-boolean"),
        pytest.param(None, {"archived": True, "x": 1}, 400, "invalidInput", id="unknown-property"),
    ],
)
async def test_archive_switch_errors(
    api: Api, course_id: str | None, body: Any, status: int, code: str
) -> None:
    ids = await imported(api, course("c1"))
    answer = await api.call("PUT", f"{COURSES}/{course_id or ids['c1']}/archive", json=body)
    assert (answer.status, answer.json["error"]["code"]) == (status, code)


async def test_a_deleted_integrations_course_cannot_be_restored(api: Api) -> None:
    ids = await imported(api, course("c1"))
    await api.call("DELETE", f"/api/v2/integrations/{INTEGRATION}")
    for archived in (False, True):
        answer = await api.call("PUT", f"{COURSES}/{ids['c1']}/archive", json={"archived": archived})
        assert (answer.status, answer.json["error"]["code"]) == (400, "integrationInactive")


async def test_another_companys_course_is_not_found(api: Api) -> None:
    ids = await imported(api, course("c1"))
    api.sim.state.integration_company[INTEGRATION] = "f" * 24
    answer = await api.call("PUT", f"{COURSES}/{ids['c1']}/archive", json={"archived": True})
    assert (answer.status, answer.json["error"]["code"]) == (404, "courseNotFound")


# -- course statistics ---------------------------------------------------------------------


async def test_attempts_are_listed_as_course_stat_dto(api: Api) -> None:
    ids = await imported(api, course("c1", defaultLang="de"))
    results = await stats(
        api,
        stat("c1", "A@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z", 99.9, score=87.5, lang="fr"),
        stat("c1", "b@x.io", f"{DAY}00:00:00Z", f"{DAY}02:00:00Z", 100),
    )
    users = {user["mail"]: user["_id"] for user in await listed(api, USERS)}
    assert await listed(api, STATS) == [
        {
            "_id": results[0]["resourceId"],
            "courseId": ids["c1"],
            "userId": users["A@x.io"],
            "lang": "fr",
            "timeSpent": 60000,
            "progress": 99,
            "score": 87,
            "firstActivityAt": f"{DAY}00:00:00.000Z",
            "lastActivityAt": f"{DAY}01:00:00.000Z",
        },
        {
            "_id": results[1]["resourceId"],
            "courseId": ids["c1"],
            "userId": users["b@x.io"],
            "lang": "de",  # the statistic named none: the course's defaultLang
            "timeSpent": 60000,
            "progress": 100,
            "firstActivityAt": f"{DAY}00:00:00.000Z",
            "lastActivityAt": f"{DAY}02:00:00.000Z",
            "completedAt": f"{DAY}02:00:00.000Z",
        },
    ]


async def test_updated_attempts_keep_their_place_and_id(api: Api) -> None:
    await imported(api, course("c1"))
    first = await stats(api, stat("c1", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z", 10))
    second = await stats(api, stat("c1", "b@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z", 10))
    update = await stats(api, stat("c1", "a@x.io", f"{DAY}00:30:00Z", f"{DAY}03:00:00Z", 60))
    assert update[0]["resourceId"] == first[0]["resourceId"]
    found = await listed(api, STATS)
    assert [item["_id"] for item in found] == [first[0]["resourceId"], second[0]["resourceId"]]
    assert (found[0]["progress"], found[0]["lastActivityAt"]) == (60, f"{DAY}03:00:00.000Z")


async def test_attempts_page_by_500_and_the_next_link_keeps_the_filters(api: Api) -> None:
    ids = await imported(api, course("c1"), course("c2"), course("c3"))
    made = await stats(
        api,
        *[stat(f"c{1 + n % 3}", f"u{n}@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z") for n in range(3 * 1201)],
    )
    found = await pages(api, STATS, [("courseId[in]", ids["c1"]), ("courseId[in]", ids["c3"])])
    assert [len(page) for page in found] == [500, 500, 500, 500, 402]
    wanted = [r["resourceId"] for r in made if r["input"]["courseIdentifier"]["value"] != "c2"]
    assert [item["_id"] for page in found for item in page] == wanted  # creation order
    one = await pages(api, STATS, {"courseId[eq]": ids["c2"]})
    assert [len(page) for page in one] == [500, 500, 201]
    assert {item["courseId"] for page in one for item in page} == {ids["c2"]}
    assert [len(page) for page in await pages(api, STATS)] == [500] * 7 + [103]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(lambda c, u: {"courseId[eq]": c["c1"]}, ["a1", "b1"], id="course-eq"),
        pytest.param(lambda c, u: {"courseId[eq]": c["c1"].upper()}, ["a1", "b1"], id="course-eq-upper"),
        pytest.param(lambda c, u: {"courseId[ne]": c["c1"]}, ["a2"], id="course-ne"),
        pytest.param(
            lambda c, u: [("courseId[in]", c["c2"]), ("courseId[in]", "0" * 24)], ["a2"], id="course-in"
        ),
        pytest.param(lambda c, u: [("courseId[nin]", c["c2"])], ["a1", "b1"], id="course-nin"),
        pytest.param(lambda c, u: {"userId[eq]": u["a@x.io"]}, ["a1", "a2"], id="user-eq"),
        pytest.param(lambda c, u: {"userId[ne]": u["a@x.io"]}, ["b1"], id="user-ne"),
        pytest.param(lambda c, u: [("userId[in]", u["b@x.io"])], ["b1"], id="user-in"),
        pytest.param(lambda c, u: [("userId[nin]", u["b@x.io"])], ["a1", "a2"], id="user-nin"),
        pytest.param(
            lambda c, u: {"courseId[eq]": c["c1"], "userId[eq]": u["b@x.io"]}, ["b1"], id="course-and-user"
        ),
        pytest.param(lambda c, u: {"completedAt[gte]": f"{DAY}02:00:00.000Z"}, ["b1"], id="completed-gte"),
        pytest.param(lambda c, u: {"completedAt[lt]": f"{DAY}02:00:00.000Z"}, ["a2"], id="completed-lt"),
        pytest.param(lambda c, u: {"completedAt[lt]": f"{DAY}02:00:00.999Z"}, ["a2"], id="ms-forced-to-0"),
    ],
)
async def test_attempt_filters(api: Api, params: Any, expected: list[str]) -> None:
    courses = await imported(api, course("c1"), course("c2"))
    made = await stats(
        api,
        stat("c1", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z", 50),
        stat("c2", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:30:00Z", 100),
        stat("c1", "b@x.io", f"{DAY}00:00:00Z", f"{DAY}02:00:00Z", 100),
    )
    names = dict(zip((r["resourceId"] for r in made), ("a1", "a2", "b1"), strict=True))
    users = {user["mail"]: user["_id"] for user in await listed(api, USERS)}
    found = await listed(api, STATS, params(courses, users))
    assert [names[item["_id"]] for item in found] == expected


async def test_internal_id_learners_are_listed(api: Api) -> None:
    await imported(api, course("c1"))
    learner = "ABCDEF0123456789ABCDEF01"
    item = stat("c1", "x@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z")
    item["userIdentifier"] = {"type": "internalId", "value": learner}
    made = await stats(api, item)
    assert [(a["_id"], a["userId"]) for a in await listed(api, STATS)] == [
        (made[0]["resourceId"], learner.lower())
    ]
    assert await listed(api, USERS, {"status[eq]": "active"}) == [
        {"_id": learner.lower(), "status": "active", "lang": "en"}
    ]
    # A mail user named by its id is the same learner: the same attempt is updated.
    mail_user = (await control(api, "users", [{"mail": "m@x.io"}]))[0]["_id"]
    by_mail = await stats(api, stat("c1", "m@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z"))
    item["userIdentifier"] = {"type": "internalId", "value": mail_user}
    by_id = await stats(api, item)
    assert by_id[0]["resourceId"] == by_mail[0]["resourceId"]


# -- users ---------------------------------------------------------------------------------

KNOWN = SimulatorSettings(op_seconds=0.05, users=frozenset({"b@x.io", "a@x.io"}), read_rate=None)


@pytest.mark.parametrize("sim_settings", [KNOWN], ids=["known-users"])
async def test_settings_users_exist_from_the_start_with_ids_from_the_seed(api: Api) -> None:
    found = await listed(api, USERS)
    assert [(user["mail"], user["status"], user["lang"]) for user in found] == [
        ("a@x.io", "active", "en"),
        ("b@x.io", "active", "en"),
    ]
    assert [user["_id"] for user in found] == [user.user_id for user in SimState(KNOWN).users]


@pytest.mark.parametrize("sim_settings", [KNOWN], ids=["known-users"])
async def test_users_added_later_become_learners(api: Api) -> None:
    await imported(api, course("c1"))
    late = stat("c1", "Late@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z")
    first = await api.finish(await api.submit("POST", "stats", [late]))
    assert first[0]["status"] == "error" and "not found" in first[0]["errorMessage"]
    added = await control(api, "users", [{"mail": "late@x.io", "status": "invited"}, {"mail": "c@x.io"}])
    assert [(user["mail"], user["status"]) for user in added] == [
        ("late@x.io", "invited"),
        ("c@x.io", "active"),
    ]
    assert all(len(user["_id"]) == 24 for user in added)
    await stats(api, late)
    assert [user["mail"] for user in await listed(api, USERS)] == ["a@x.io", "b@x.io", "late@x.io", "c@x.io"]
    assert (await listed(api, STATS))[0]["userId"] == added[0]["_id"]


async def test_a_deleted_user_is_not_a_learner(api: Api) -> None:
    await imported(api, course("c1"))
    await stats(api, stat("c1", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z"))
    [gone] = await control(api, "users", [{"mail": "A@X.IO", "status": "deleted"}])
    assert gone["mail"] == "a@x.io" and gone["status"] == "deleted"
    refused = await api.finish(
        await api.submit("POST", "stats", [stat("c1", "a@x.io", f"{DAY}05:00:00Z", f"{DAY}06:00:00Z")])
    )
    assert refused[0]["status"] == "error" and "not found" in refused[0]["errorMessage"]
    assert len(await listed(api, STATS)) == 1  # its attempts stay


async def test_mails_first_seen_in_statistics_become_users(api: Api) -> None:
    await imported(api, course("c1"))
    await stats(api, stat("c1", "Someone@X.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z"))
    [user] = await listed(api, USERS)
    assert user["mail"] == "Someone@X.io" and user["status"] == "active"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"mail[eq]": "A@x.io"}, ["a"], id="mail-eq-any-case"),
        pytest.param({"mail[ne]": "a@x.io"}, ["b", "c"], id="mail-ne"),
        pytest.param(
            [("mail[in]", "C@X.IO"), ("mail[in]", "a@x.io"), ("mail[in]", "z@x.io")], ["a", "c"], id="mail-in"
        ),
        pytest.param([("mail[nin]", "c@x.io")], ["a", "b"], id="mail-nin"),
        pytest.param({"username[eq]": "bee"}, ["b"], id="username-eq"),
        pytest.param({"username[ne]": "bee"}, [], id="username-ne-without-usernames"),
        pytest.param([("username[in]", "bee")], ["b"], id="username-in"),
        pytest.param([("username[nin]", "x")], ["b"], id="username-nin"),
        pytest.param({"status[eq]": "invited"}, ["c"], id="status-eq"),
        pytest.param({"status[ne]": "invited"}, ["a", "b"], id="status-ne"),
        pytest.param({"status[eq]": "active", "mail[eq]": "c@x.io"}, [], id="combined"),
    ],
)
async def test_user_filters(api: Api, params: Any, expected: list[str]) -> None:
    await control(
        api,
        "users",
        [{"mail": "a@x.io"}, {"mail": "b@x.io", "username": "bee"}, {"mail": "c@x.io", "status": "invited"}],
    )
    assert [user["mail"][0] for user in await listed(api, USERS, params)] == expected


async def test_users_page_by_500(api: Api) -> None:
    await control(api, "users", [{"mail": f"u{n}@x.io"} for n in range(1001)])
    found = await pages(api, USERS, {"status[eq]": "active"})
    assert [len(page) for page in found] == [500, 500, 1]
    assert [user["mail"] for page in found for user in page] == [f"u{n}@x.io" for n in range(1001)]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"mail": "a@x.io"}, id="not-a-list"),
        pytest.param([{"mail": ""}], id="empty-mail"),
        pytest.param([{"mail": "a@x.io", "status": "gone"}], id="bad-status"),
        pytest.param([{"mail": "a@x.io", "lang": "fr"}], id="unknown-key"),
    ],
)
async def test_users_control_refuses_malformed_bodies(api: Api, body: Any) -> None:
    answer = await api.call("POST", "/_sim/users", json=body, auth=False, version=False)
    assert answer.status == 400 and "error" in answer.json
    assert await listed(api, USERS) == []


# -- launch --------------------------------------------------------------------------------


async def test_a_launch_opens_one_attempt_from_the_integrations_defaults(api: Api) -> None:
    patched = await api.call("PATCH", f"/api/v2/integrations/{INTEGRATION}", json={"defaultProgress": 30})
    assert patched.status == 200
    ids = await imported(api, course("c1", defaultLang="it"))
    launch = {"integrationId": INTEGRATION, "externalId": "c1", "mail": "a@x.io"}
    opened = await api.call("POST", "/_sim/launch", json=launch, auth=False, version=False)
    assert opened.status == 201
    now = api.sim.snapshot()["now"]
    attempt = opened.json
    assert attempt["courseId"] == ids["c1"] and len(attempt["_id"]) == 24
    assert (attempt["progress"], attempt["timeSpent"], attempt["lang"]) == (30, 1, "it")
    assert attempt["firstActivityAt"] == attempt["lastActivityAt"] <= now and "completedAt" not in attempt
    again = await api.call("POST", "/_sim/launch", json=launch, auth=False, version=False)
    assert (again.status, again.json) == (200, attempt)  # the open attempt is resumed
    assert await listed(api, STATS) == [attempt]
    [user] = await listed(api, USERS)
    assert attempt["userId"] == user["_id"]


async def test_a_launch_resumes_the_open_attempt_a_statistic_made(api: Api) -> None:
    await imported(api, course("c1"))
    made = await stats(api, stat("c1", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:00:00Z", 40))
    launch = {"integrationId": INTEGRATION, "externalId": "c1", "mail": "A@x.io"}
    resumed = await api.call("POST", "/_sim/launch", json=launch, auth=False, version=False)
    assert (resumed.status, resumed.json["_id"], resumed.json["progress"]) == (200, made[0]["resourceId"], 40)
    await stats(api, stat("c1", "a@x.io", f"{DAY}02:00:00Z", f"{DAY}03:00:00Z", 100))  # a second attempt
    await stats(api, stat("c1", "a@x.io", f"{DAY}00:00:00Z", f"{DAY}01:30:00Z", 100))  # the first completes
    opened = await api.call("POST", "/_sim/launch", json=launch, auth=False, version=False)
    assert opened.status == 201  # only completed attempts: a new one
    assert len(await listed(api, STATS)) == 3


async def test_a_launch_with_default_completion_completes_and_the_next_opens_another(api: Api) -> None:
    await api.call("PATCH", f"/api/v2/integrations/{INTEGRATION}", json={"defaultCompletion": True})
    await imported(api, course("c1"))
    launch = {"integrationId": INTEGRATION, "externalId": "c1", "mail": "a@x.io"}
    first = await control(api, "launch", launch)
    assert first["progress"] == 100 and first["completedAt"] == first["lastActivityAt"]
    second = await control(api, "launch", launch)
    assert second["_id"] != first["_id"]
    assert len(await listed(api, STATS)) == 2


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"integrationId": INTEGRATION, "externalId": "nope", "mail": "a@x.io"}, id="unknown-course"
        ),
        pytest.param(
            {"integrationId": "0" * 24, "externalId": "c1", "mail": "a@x.io"}, id="unknown-integration"
        ),
        pytest.param({"integrationId": INTEGRATION, "externalId": "c2", "mail": "a@x.io"}, id="archived"),
        pytest.param({"integrationId": INTEGRATION, "externalId": "c1"}, id="missing-mail"),
    ],
)
async def test_launch_refusals(api: Api, body: Any) -> None:
    await imported(api, course("c1"), course("c2"))
    await api.finish(await api.submit("DELETE", "courses", [{"externalId": "c2"}]))
    answer = await api.call("POST", "/_sim/launch", json=body, auth=False, version=False)
    assert answer.status == 400 and "error" in answer.json
    assert await listed(api, STATS) == []


# -- query validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        pytest.param(COURSES, {"name[eq]": "x"}, id="courses-unknown"),
        pytest.param(COURSES, {"status[ne]": "archived"}, id="courses-undeclared-operator"),
        pytest.param(COURSES, {"status[eq]": "gone"}, id="courses-bad-status"),
        pytest.param(COURSES, {"groupId[eq]": "zz"}, id="courses-bad-id"),
        pytest.param(COURSES, {"createdAt[gte]": "yesterday"}, id="courses-bad-date"),
        pytest.param(COURSES, {"collaborativeLearning[eq]": "maybe"}, id="courses-bad-boolean"),
        pytest.param(STATS, {"lang[eq]": "en"}, id="stats-unknown"),
        pytest.param(STATS, {"courseId[eq]": "x"}, id="stats-bad-id"),
        pytest.param(STATS, [("userId[in]", "x")], id="stats-bad-id-in"),
        pytest.param(STATS, {"completedAt[gt]": f"{DAY}00:00:00Z"}, id="stats-undeclared-operator"),
        pytest.param(USERS, {"firstName[eq]": "x"}, id="users-unknown"),
        pytest.param(USERS, {"status[eq]": "gone"}, id="users-bad-status"),
        pytest.param(USERS, {"next": "garbage"}, id="users-bad-cursor"),
        pytest.param(USERS, {"next": "x", "status[eq]": "active"}, id="users-next-and-filters"),
    ],
)
async def test_unknown_or_bad_query_parameters_are_refused(api: Api, path: str, params: Any) -> None:
    answer = await api.call("GET", path, params=params)
    assert (answer.status, answer.json["error"]["code"]) == (400, "invalidInput")


async def test_a_next_token_is_bound_to_its_list(api: Api) -> None:
    await control(api, "users", [{"mail": f"u{n}@x.io"} for n in range(501)])
    link = (await api.call("GET", USERS)).headers["Link"]
    token = link[link.index("next=") + 5 : link.index(">")]
    answer = await api.call("GET", f"{COURSES}?next={token}")
    assert (answer.status, answer.json["error"]["code"]) == (400, "invalidInput")

"""The simulated read endpoints of the core API: courses, course statistics, users, one user,
one group; and the course archive switch.

Each list pages by 500 with a ``Link`` to the next page and accepts exactly the bracket filters
the official document declares for it (values checked against their declared schemas). Every
company sees the courses of its own integrations (deleted ones included) and their attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from syncer.simulator import api, rules
from syncer.simulator.learners import AttemptKey, User, attempt_dto, mail_key
from syncer.simulator.operation import iso
from syncer.simulator.rules import Attempt
from syncer.simulator.state import SimState

COURSES_READ, COURSE_STATS_READ, USERS_READ = "courses:read", "courseStats:read", "users:read"
COURSES_WRITE, GROUPS_READ = "courses:write", "groups:read"
PAGE = 500  # documented page size of the three lists

Test = Callable[[Any], bool]


# -- filters -------------------------------------------------------------------------------


@cache
def _declared(route: str) -> dict[str, dict[str, Any]]:
    """name -> {operator: value schema} of the query filters the document declares."""
    operation = rules.spec()["core"]["paths"][route]["get"]
    return {
        param["name"]: param["schema"]["properties"]
        for param in operation["parameters"]
        if param["in"] == "query"
    }


@cache
def _checker(route: str, name: str, op: str) -> Draft202012Validator:
    return Draft202012Validator(_declared(route)[name][op], format_checker=FormatChecker())


def _typed(value: Any, schema: dict[str, Any]) -> Any:
    if schema.get("type") == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def _filters(request: web.Request, route: str) -> tuple[dict[str, Any], int]:
    """The request's filters (or its ``next`` token's) and cursor; 400 for any other parameter
    or a value its declared schema refuses."""
    declared = _declared(route)
    filters, after = api.query(request, {name: set(ops) for name, ops in declared.items()})
    for key, value in filters.items():
        name, _, op = key[:-1].partition("[")
        if name not in declared or op not in declared[name]:
            raise api.invalid(f"unknown query parameter {key!r}")
        found = best_match(_checker(route, name, op).iter_errors(_typed(value, declared[name][op])))
        if found is not None:
            raise api.invalid(f"{key}: {found.message}")
    return filters, after


def _choice(filters: dict[str, Any], name: str, get: Callable[[Any], str | None]) -> list[Test]:
    """Tests of ``name[eq|ne|in|nin]`` on a value read by ``get`` (already normalised, as the
    filter values are by ``_norm``). A row without the value matches none of them."""
    tests: list[Test] = []
    for op, inside in (("eq", True), ("ne", False), ("in", True), ("nin", False)):
        given = filters.get(f"{name}[{op}]")
        if given is None:
            continue
        wanted = {_norm(name, v) for v in (given if isinstance(given, list) else [given])}

        def test(row: Any, wanted: set[str] = wanted, inside: bool = inside) -> bool:
            value = get(row)
            return value is not None and (value in wanted) == inside

        tests.append(test)
    return tests


def _norm(name: str, value: str) -> str:
    # Ids compare in lower case (the platform's ObjectIds are lower-case hex); UNDOCUMENTED:
    # mails compare case-insensitively.
    if name == "mail":
        return mail_key(value)
    return value.lower() if name.endswith(("Id", "Ids")) else value


def _window(filters: dict[str, Any], name: str, get: Callable[[Any], float | None]) -> list[Test]:
    """Tests of ``name[gte]``/``name[lt]`` on an epoch time (milliseconds kept, as reported)."""
    tests: list[Test] = []
    if f"{name}[gte]" in filters:
        gte = api.filter_time(filters[f"{name}[gte]"])
        tests.append(lambda row: (t := get(row)) is not None and int(t * 1000) / 1000 >= gte)
    if f"{name}[lt]" in filters:
        lt = api.filter_time(filters[f"{name}[lt]"])
        tests.append(lambda row: (t := get(row)) is not None and int(t * 1000) / 1000 < lt)
    return tests


def _ids(filters: dict[str, Any], name: str) -> list[str] | None:
    """The only values ``name`` may take under the filters (eq or in), for an index."""
    if f"{name}[eq]" in filters:
        return [filters[f"{name}[eq]"].lower()]
    if f"{name}[in]" in filters:
        return [value.lower() for value in filters[f"{name}[in]"]]
    return None


# -- courses -------------------------------------------------------------------------------


def course_dto(state: SimState, key: tuple[str, str], record: dict[str, Any]) -> dict[str, Any]:
    """The official ``CourseDTO`` of an imported external course."""
    integration = state.integration_record(key[0]) or {}
    item = record["course"]
    lang = item["defaultLang"]
    return {
        "_id": record["courseId"],
        "name": item["name"],
        "sourceLang": lang,
        "defaultLang": lang,
        "authorId": item.get("authorId") or integration["authorId"],
        "groupId": integration["groupId"],
        "coAuthorIds": [],
        "createdAt": iso(record["createdAt"]),
        "modifiedAt": iso(record["modifiedAt"]),
        "status": "archived" if record["archived"] else "published",
        # UNDOCUMENTED: an external course's translations are published, have no translators,
        # and carry the translated name and description.
        "translations": [
            {
                "lang": translation["lang"],
                "published": True,
                "translatorIds": [],
                "translatedFields": {
                    field: translation["translatedFields"][field]
                    for field in ("name", "description")
                    if field in translation["translatedFields"]
                },
            }
            for translation in item.get("translations", [])
        ],
        "type": "external",
        "externalPlatform": integration["externalPlatform"],
    }


async def list_courses(request: web.Request) -> web.Response:
    """GET /api/v2/courses: the company's imported courses (CourseDTO), 500 a page, oldest first."""
    principal = api.guard(request, COURSES_READ, write=False)
    state = api.state_of(request)
    route = "/api/v2/courses"
    filters, after = _filters(request, route)

    def field(name: str) -> Callable[[Any], Any]:
        return lambda row: row[1].get(name)

    tests = [
        *_choice(filters, "status", field("status")),
        *_choice(filters, "type", field("type")),
        *_choice(filters, "groupId", lambda row: row[1]["groupId"].lower()),
        *_choice(filters, "authorId", lambda row: row[1]["authorId"].lower()),
        # UNDOCUMENTED: an external course's original author is its author.
        *_choice(filters, "originalAuthorId", lambda row: row[1]["authorId"].lower()),
        *_choice(filters, "sourceLang", field("sourceLang")),
        *_window(filters, "createdAt", lambda row: row[0]["createdAt"]),
        *_window(filters, "modifiedAt", lambda row: row[0]["modifiedAt"]),
    ]
    # UNDOCUMENTED: external courses have no tags and no co-authors (tagIds[in] and
    # coAuthorIds[in] match none) and are not collaborative learning.
    if "tagIds[in]" in filters or "coAuthorIds[in]" in filters:
        tests.append(lambda row: False)
    if "collaborativeLearning[eq]" in filters:
        wanted = filters["collaborativeLearning[eq]"] == "true"
        tests.append(lambda row: wanted is False)

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        for key, record in state.courses.items():
            if record["seq"] <= after or state.integration_company.get(key[0]) != principal.company_id:
                continue
            row = (record, course_dto(state, key, record))
            if all(test(row) for test in tests):
                yield record["seq"], row[1]

    with state.locked():
        # UNDOCUMENTED: courses are listed oldest first (import order).
        return api.page_of(request, request.path, rows(), filters, PAGE)


async def archive_course(request: web.Request) -> web.Response:
    """PUT /api/v2/courses/{courseId}/archive: archive or restore a course; 200 with its CourseDTO."""
    principal = api.guard(request, COURSES_WRITE, write=True)
    state = api.state_of(request)
    body = await api.json_body(request, api.invalid)
    problem = rules.problem("core", "ArchiveCourseBody", body)
    if problem:
        raise api.invalid(problem)
    with state.locked():
        outcome = state.set_archived(principal.company_id, request.match_info["courseId"], body["archived"])
        if outcome == "courseNotFound":
            raise api.error(404, "courseNotFound", "Course not found")
        if isinstance(outcome, str):
            raise api.error(400, "integrationInactive", "The course is linked to an inactive integration")
        return api.json_response(200, course_dto(state, *outcome))


# -- course statistics ---------------------------------------------------------------------


async def list_course_stats(request: web.Request) -> web.Response:
    """GET /api/v2/courses/stats: every attempt (CourseStatDTO), 500 a page, in creation order."""
    principal = api.guard(request, COURSE_STATS_READ, write=False)
    state = api.state_of(request)
    filters, after = _filters(request, "/api/v2/courses/stats")
    tests = [
        *_choice(filters, "courseId", lambda row: row[0][1]),
        *_choice(filters, "userId", lambda row: row[0][2]),
        *_window(
            filters,
            "completedAt",
            lambda row: row[1].completed_at.timestamp() if row[1].completed_at else None,
        ),
    ]

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        wanted = state.attempts.seqs(after, courses=_ids(filters, "courseId"), users=_ids(filters, "userId"))
        for seq in wanted:
            row: tuple[AttemptKey, Attempt] = state.attempts.entry(seq)
            key = row[0]
            if state.integration_company.get(key[0]) != principal.company_id:
                continue
            if all(test(row) for test in tests):
                lang = state.courses[state.course_keys[key[1]]]["course"]["defaultLang"]
                yield seq, attempt_dto(key, row[1], lang)

    with state.locked():
        return api.page_of(request, request.path, rows(), filters, PAGE)


# -- users ---------------------------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    """GET /api/v2/users: the users (UserDTO), 500 a page, in creation order."""
    api.guard(request, USERS_READ, write=False)
    state = api.state_of(request)
    filters, after = _filters(request, "/api/v2/users")
    tests = [
        *_choice(filters, "mail", lambda user: mail_key(user.mail) if user.mail is not None else None),
        # UNDOCUMENTED: usernames compare exactly; a user without one matches no username filter.
        *_choice(filters, "username", lambda user: user.username),
        *_choice(filters, "status", lambda user: user.status),
    ]

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        candidates: Iterable[User] = state.users.since(after)
        mails = filters.get("mail[in]", [filters["mail[eq]"]] if "mail[eq]" in filters else None)
        if mails is not None:
            # Through the mail index: a check of 25 mails does not read every user.
            found = (state.users.with_mail(mail) for mail in set(mails))
            candidates = sorted((user for user in found if user is not None), key=lambda user: user.seq)
        for user in candidates:
            if user.seq > after and all(test(user) for test in tests):
                yield user.seq, user.dto()

    with state.locked():
        # UNDOCUMENTED: one user directory for the whole simulator, shared by its companies.
        return api.page_of(request, request.path, rows(), filters, PAGE)


async def get_user(request: web.Request) -> web.Response:
    """GET /api/v2/users/{userId}: one user (a learner, or an author of integrations)."""
    api.guard(request, USERS_READ, write=False)
    user = api.state_of(request).user_of_id(request.match_info["userId"])
    if user is None:
        # UNDOCUMENTED: a malformed id is userNotFound too.
        raise api.error(404, "userNotFound", "User not found")
    return api.json_response(200, user.dto())


# -- groups --------------------------------------------------------------------------------


async def get_group(request: web.Request) -> web.Response:
    """GET /api/v2/groups/{groupId}: the group (GroupDTO) when it exists."""
    api.guard(request, GROUPS_READ, write=False)
    group_id = request.match_info["groupId"]
    if not api.state_of(request).group_exists(group_id):
        # UNDOCUMENTED: a malformed id is groupNotFound too.
        raise api.error(404, "groupNotFound", "Group not found")
    # UNDOCUMENTED: groups are ids only; the name is made from the id, every group is private.
    return api.json_response(
        200, {"_id": group_id.lower(), "name": f"Group {group_id.lower()}", "public": False}
    )

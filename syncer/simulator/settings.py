"""How a simulator is configured: its API clients, limits, pacing and bind address."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_SCOPES = frozenset(
    {
        "integrations:read",
        "integrations:write",
        "integrations:bulk",
        "bulkOperations:read",
        "courses:read",
        "courses:write",
        "courseStats:read",
        "users:read",
        "groups:read",
    }
)
"""Every scope an endpoint of the simulator requires; the demo client is granted them all."""
DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"  # a public demo value, printed by `syncer simulator`
DEMO_COMPANY_ID = "5f0c0c0c0c0c0c0c0c0c0c0c"


@dataclass(frozen=True)
class SimClient:
    """One API credential of the simulated platform: id, secret, company and granted scopes."""

    client_id: str
    client_secret: str = field(repr=False)
    company_id: str = DEMO_COMPANY_ID
    scopes: frozenset[str] = ALL_SCOPES


DEMO_CLIENT = SimClient(client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET)


@dataclass(frozen=True)
class SimulatorSettings:
    """Everything a simulator instance needs; the defaults are the documented platform limits.

    ``users`` None accepts any learner mail (a user appears when a statistic first names it);
    a set of mails: those are the users from the start, and only users are learners.
    ``groups``/``authors`` None: every well-formed group id / author (user) id exists; a set of
    ids: only those (and the users) do, and creating an integration in another group or with
    another author is refused with 404 ``groupNotFound``/``userNotFound`` (``POST /_sim/groups``
    declares more).
    ``write_rate``/``read_rate`` are requests per company over a sliding 1 s window
    (None: unlimited). ``op_seconds`` is how long an operation takes from submission to its end.
    """

    host: str = "127.0.0.1"
    port: int = 0
    token_lifetime: float = 3600.0
    op_seconds: float = 0.2
    clients: tuple[SimClient, ...] = (DEMO_CLIENT,)
    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    write_rate: float | None = 10.0
    read_rate: float | None = 50.0
    concurrent_operations: int = 3
    seed: int = 0
    max_course_items: int = 10_000
    max_stat_items: int = 10_000
    max_archive_items: int = 1_000
    integrations_limit: int = 100
    journal_limit: int = 10_000
    tick_seconds: float = 0.01
    # False skips the per-item schema check (benchmarks: it costs ~0.2 ms an item).
    check_items: bool = True

"""The config's typed model: the frozen dataclasses and enums a loaded config is made of.

Every later stage reads these and nothing else of the config; ``build`` makes them from the
checked YAML. Values that may hold a password are ``Secret`` (``syncer.secrets``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from syncer.errors import ConfigError, Problem
from syncer.secrets import Secret


class SourceKind(StrEnum):
    """How a source is read."""

    CSV = "csv"
    JSONL = "jsonl"
    SQL = "sql"


class OnDrift(StrEnum):
    """What apply does with a course the platform changed by hand since syncer sent it."""

    RESTORE = "restore"  # send it again (the default): the source is the truth
    REPORT = "report"  # list it as drift only


class UnsafeChange(StrEnum):
    """What to do with a statistic whose predicted effect on the platform's attempts is unsafe."""

    HOLD = "hold"  # not sent; listed with its reason; apply exits 3 (the default)
    SEND = "send"  # sent anyway: "I accept the platform's behaviour" (docs/attempts.md)


class FieldType(StrEnum):
    """The ``type`` transform of a field."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"


class FilterOp(StrEnum):
    """A row filter's test."""

    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    NOT_IN = "not_in"
    EMPTY = "empty"
    NOT_EMPTY = "not_empty"


@dataclass(frozen=True)
class SourceConfig:
    """A named table of rows."""

    name: str
    kind: SourceKind
    path: Path | None = None  # csv / jsonl, resolved against the config's folder
    delimiter: str = ","
    encoding: str = "utf-8"
    url: Secret | None = None  # sql: SQLAlchemy URL (may hold a password)
    query: str | None = None  # sql
    where: str = ""  # "config.yaml:LINE:COL" of the declaration, for messages
    # sql, incremental (docs/incremental.md): the column past whose last recorded value a run reads,
    # how far before that value it starts again (a timedelta or a number; None: the default for
    # the column's type), and how old the last full read may grow.
    cursor: str | None = None
    overlap: timedelta | float | None = None
    full_every: timedelta | None = None
    # Set by the planner for one run (syncer/plan/reads.py), never by the config: which rows to read.
    window: Window | None = None


@dataclass(frozen=True)
class Window:
    """The rows of an incremental SQL source one run reads: ``since <= column <= upto``.

    ``since`` None reads from the start (a full read); ``upto`` None has no upper bound. The
    bounds are values of the column's type (datetime, date, int, float, Decimal or str).
    """

    column: str
    since: Any = None
    upto: Any = None


@dataclass(frozen=True)
class FieldSpec:
    """How one API field is produced from a row.

    Exactly one of ``column``, ``template`` or ``has_value`` gives the raw value; the other
    attributes are transforms, applied in this order: trim, default, map, split, lower, type,
    unit, scale, format/timezone. ``identifier`` is set for the statistic's ``course``
    (``externalId``/``internalId``) and ``user`` (``mail``/``internalId``) fields.
    """

    target: str
    column: str | None = None
    template: str | None = None
    value: Any = None
    has_value: bool = False
    default: Any = None
    has_default: bool = False
    type: FieldType | None = None
    unit: str | None = None  # ms, s, min, h -> milliseconds
    scale: float | None = None
    format: str | None = None
    timezone: str | None = None
    map: Mapping[str, Any] | None = None
    split: str | None = None
    lower: bool = False
    trim: bool = False
    identifier: str | None = None
    where: str = ""


@dataclass(frozen=True)
class FilterSpec:
    """A row filter: keep the row only when ``column`` passes ``op``."""

    column: str
    op: FilterOp
    value: Any = None
    where: str = ""


@dataclass(frozen=True)
class Tolerance:
    """How many invalid rows a run tolerates: a count, or a share of the rows read."""

    count: int | None = None
    share: float | None = None  # 0.01 for "1%"

    def allows(self, invalid: int, total: int) -> bool:
        """True when ``invalid`` rows out of ``total`` stay within the tolerance."""
        if invalid == 0:
            return True
        if self.count is not None:
            return invalid <= self.count
        if self.share is not None:
            return total > 0 and invalid <= self.share * total
        return False

    def tolerates(self, invalid: int, valid: int) -> bool:
        """``allows`` over the rows mapped: ``invalid`` of ``invalid + valid`` (filtered rows do not count).

        The one way a plan (syncer/plan/summary.py) and ``syncer validate``'s sample
        (syncer/mapping/sample.py) judge a stream's invalid rows.
        """
        return self.allows(invalid, invalid + valid)


@dataclass(frozen=True)
class ObjectConfig:
    """The courses or the statistics of one integration."""

    source: str
    fields: tuple[FieldSpec, ...]
    filters: tuple[FilterSpec, ...] = ()
    tolerate_invalid: Tolerance = field(default_factory=Tolerance)
    archive_missing: bool = False  # courses only
    force_new: bool = False  # stats only; a field rule for forceNew is in ``fields`` instead
    on_unsafe_change: UnsafeChange = UnsafeChange.HOLD  # stats only
    on_drift: OnDrift = OnDrift.RESTORE  # courses only
    where: str = ""


@dataclass(frozen=True)
class IntegrationConfig:
    """One 360Learning integration: given by ``id``, or declared by platform, group and author."""

    name: str
    id: str | None = None
    platform: str | None = None
    group: str | None = None
    author: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    courses: ObjectConfig | None = None
    stats: ObjectConfig | None = None
    where: str = ""


@dataclass(frozen=True)
class Limits:
    """Client-side limits (defaults: the documented platform limits)."""

    concurrent_operations: int = 3
    requests_per_second: float = 10.0  # writes: POST/PUT/PATCH/DELETE
    reads_per_second: float = 50.0


@dataclass(frozen=True)
class BatchSizes:
    """Items per bulk call (documented maxima; configurable downwards)."""

    courses: int = 10_000
    stats: int = 10_000
    archives: int = 1_000


@dataclass(frozen=True)
class ApiConfig:
    """How to reach the API."""

    base_url: str
    client_id: str
    client_secret: Secret
    company_id: str | None = None
    limits: Limits = field(default_factory=Limits)
    batch_size: BatchSizes = field(default_factory=BatchSizes)
    timeout_seconds: float = 60.0  # one HTTP request
    retry_seconds: float = 600.0  # total time spent retrying one call before giving up


class NotifyFormat(StrEnum):
    """The body a webhook receives (docs/alerts.md)."""

    JSON = "json"  # syncer's documented JSON object
    SLACK = "slack"  # a Slack-compatible {"text", "blocks"} message


class NotifyOutcome(StrEnum):
    """What in a run's end calls a webhook (docs/alerts.md)."""

    FAILED = "failed"  # exit 1, 4 or 5: the run stopped, or never started
    REJECTED = "rejected"  # the API rejected more records than the webhook's rejected_above
    HELD = "held"  # statistics held (their effect on the platform's attempts is unsafe)
    INVALID = "invalid"  # invalid rows beyond tolerate_invalid
    GUARD = "guard"  # a safety guard refused (exit 6)
    RECOVERED = "recovered"  # this run succeeded after one or more failed runs


@dataclass(frozen=True)
class Webhook:
    """One ``notify:`` entry: where to post, in which form, on which outcomes."""

    url: Secret  # may hold a token in its path or query: never shown
    format: NotifyFormat = NotifyFormat.JSON
    on: frozenset[NotifyOutcome] = frozenset(
        {NotifyOutcome.FAILED, NotifyOutcome.GUARD, NotifyOutcome.RECOVERED}
    )
    rejected_above: int = 0
    timeout_seconds: float = 5.0
    name: str = ""  # how logs name it (default: notify[INDEX])
    where: str = ""


REGIONS: Mapping[str, str] = {
    "eu": "https://app.360learning.com",
    "us": "https://app.us.360learning.com",
}


@dataclass(frozen=True)
class Config:
    """A whole, validated config."""

    path: Path  # as given: a config file, or a config directory
    api: ApiConfig
    ledger_url: Secret
    sources: Mapping[str, SourceConfig]
    integrations: Mapping[str, IntegrationConfig]
    version: int = 1
    digest: str = ""  # content hash of the config after interpolation (secrets excluded)
    refresh_users: bool = False  # refresh.users: each apply lists the platform's learners first
    # Located warnings: the config works, but a person should change it (a secret written in the
    # file, an API variable unset offline). The CLI prints them; nothing else reads them.
    warnings: tuple[Problem, ...] = ()
    sample_rows: int | None = None  # validate.sample_rows: rows of each source validate maps
    redact: bool = False  # output.redact: learner e-mails as tokens in plans, reports, logs
    notify: tuple[Webhook, ...] = ()  # notify: webhooks called at the end of an apply
    metrics_file: Path | None = None  # metrics.file: the Prometheus textfile an apply writes
    files: tuple[Path, ...] = ()  # every file read: the main file first, then the part files

    @property
    def main_file(self) -> Path:
        """The file holding version, api and ledger: ``path``, or a config directory's syncer.yaml."""
        return self.files[0] if self.files else self.path

    def select(self, wanted: Sequence[str] | None) -> list[str]:
        """The integrations named (all when none): unknown names are a ConfigError listing the known."""
        if not wanted:
            return list(self.integrations)
        unknown = [n for n in wanted if n not in self.integrations]
        if unknown:
            known = ", ".join(self.integrations) or "none"
            raise ConfigError(f"{self.path}: no integration named {', '.join(unknown)} (known: {known})")
        return list(dict.fromkeys(wanted))

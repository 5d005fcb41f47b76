"""Desired records vs the ledger -> a Plan, computed in the database, not in Python memory.

The rows of a CSV or JSON Lines file are first digested and looked up in the ledger (``_skim``):
rows unchanged since they were sent are counted, not mapped. Mapped records are staged in a
temporary table of the ledger database (filled in chunks with executemany, or COPY),
duplicates are resolved there, and the comparison with the ledger's ``records`` is a join. The
Plan keeps counts and capped detail only; ``Plan.batches`` streams the records to send back
from the staging table, in the order product.md §4 asks for. Plan files: syncer/savedplan.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from syncer.config import BatchSizes, Config, SourceKind, Tolerance, UnsafeChange
from syncer.errors import ConfigError, LedgerError, PlanError
from syncer.ledger import Ledger, operations, records
from syncer.models import (
    Change,
    ChangeAction,
    Effect,
    FieldChange,
    IntegrationSummary,
    InvalidRow,
    KindCounts,
    OperationType,
    Record,
    RecordKind,
    RecordStatus,
    StagedRow,
    UnsafeStat,
    content_hash,
)
from syncer.plan.attempts import Prediction, predict

if TYPE_CHECKING:
    from syncer.plan.streams import FileStream, Selection

__all__ = [
    "DETAIL_LIMIT",
    "Desired",
    "Plan",
    "build_plan",
    "plan_records",
]

DETAIL_LIMIT = 100
"""Changed records and invalid rows a plan keeps in detail (per action); the rest are counted."""

_CHUNK = 5000
# Mass-archive guard (product.md §4): more than this share of the live courses, and more than
# this many, needs --allow-mass-archive.
GUARD_SHARE = 0.10
GUARD_MIN = 5

_OK, _INVALID, _DUPLICATE = "ok", "invalid", "duplicate"
_SKIPPED, _UNCHANGED = "skipped", "unchanged"
_ALSO_MAPPED = "also-mapped"  # classify: the key of a row skipped by digest (never in a plan)
_OP_OF_KIND = {
    RecordKind.COURSE: OperationType.IMPORT_COURSES,
    RecordKind.STAT: OperationType.IMPORT_STATS,
    RecordKind.ARCHIVE: OperationType.ARCHIVE_COURSES,
}


@dataclass(frozen=True)
class Desired:
    """The desired courses or statistics of one integration, as mapping streams them."""

    integration: str
    kind: RecordKind
    # StagedRow: mapping's fast path; a list: a run of StagedRows (staging.stage_runs)
    items: Iterable[Record | InvalidRow | StagedRow | list[StagedRow]]
    archive_missing: bool = False  # courses: archive live courses this stream no longer has
    tolerance: Tolerance = field(default_factory=Tolerance)  # invalid rows that do not fail a run
    # A file read by digest: only the rows the ledger does not know as synced are mapped (then
    # ``items`` is not used; a file that cannot be cut is mapped whole from ``file.classic()``).
    file: FileStream | None = None
    # Statistics whose predicted effect is unsafe are sent anyway (stats.on_unsafe_change: send).
    send_unsafe: bool = False


_SENDS = [a.value for a in (ChangeAction.NEW, ChangeAction.CHANGED, ChangeAction.RESEND, ChangeAction.RETRY)]


def _staging_tables(plan_id: str) -> tuple[Table, Table]:
    """The staged records, and what each needs when it is not unchanged (id -> action)."""
    metadata = MetaData()
    actions = Table(
        f"syncer_actions_{plan_id[:12]}",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("action", String(16), nullable=False),
        # Copied from the staged row: the summaries then read this small table alone instead
        # of seeking each row of the big one.
        Column("integration", String(255), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("grp", Text, nullable=False),
        # Statistics: the attempt the platform last confirmed for the record (syncer/attempts.py),
        # read by the same join with the ledger.
        Column("own_end", Text),
        Column("own_done", Boolean),
        prefixes=["TEMPORARY"],
    )
    return _staging_table(f"syncer_staged_{plan_id[:12]}", metadata), actions


def _staging_table(name: str, metadata: MetaData) -> Table:
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        # The source stream's position in the plan: details and invalid rows are listed in the
        # order of (stream, id), even after a stream is staged again (_settle_duplicates).
        Column("stream", Integer, nullable=False),
        Column("integration", String(255), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("key", Text, nullable=False),
        Column("hash", String(64)),
        Column("payload", Text),  # JSON text as orjson wrote it: parsed again only when sent
        Column("origin", Text, nullable=False),
        Column("grp", Text, nullable=False),
        Column("ord", Text, nullable=False),
        Column("activity", Text, nullable=False),
        Column("digest", BigInteger),  # of the source row (file sources), recorded when sent
        Column("state", String(16), nullable=False),
        Column("field", Text),
        Column("reason", Text),
        prefixes=["TEMPORARY"],
    )


class Plan:
    """The difference between the sources and the ledger, with a stream of its batches.

    It holds a connection to the ledger database (its staging table lives there) until
    ``discard()``; use it as a context manager.
    """

    def __init__(
        self,
        *,
        plan_id: str,
        generation: int,
        summaries: Sequence[IntegrationSummary],
        changes: Sequence[Change] = (),
        invalid_rows: Sequence[InvalidRow] = (),
        invalid_total: int = 0,
        batch_sizes: BatchSizes | None = None,
        retry_rejected: bool = False,
        ledger: Ledger | None = None,
        conn: Connection | None = None,
        staged: Table | None = None,
        actions: Table | None = None,
        tolerance: Mapping[str, bool] | None = None,
        unmapped: Mapping[str, int] | None = None,
        unsafe: Sequence[UnsafeStat] = (),
        unsafe_total: int = 0,
        held_total: int = 0,
        prediction: Prediction | None = None,
    ) -> None:
        # Without ledger, connection and staging table the plan is detached: numbers and detail
        # only (a plan read back for display, or built by tests), no batches.
        self._ledger = ledger
        self._conn = conn
        self._staged = staged
        self._actions = actions
        self.plan_id = plan_id
        self.generation = generation
        self.integrations = tuple(summaries)
        self.changes = tuple(changes)
        self.invalid_rows = tuple(invalid_rows)
        self.invalid_total = invalid_total
        self.batch_sizes = batch_sizes or BatchSizes()
        self.retry_rejected = retry_rejected
        self._tolerated = dict(tolerance or {})
        # Per integration: source rows known unchanged by their digest, hence not mapped.
        self.unmapped: dict[str, int] = dict(unmapped or {})
        # Statistics whose predicted effect on the platform's attempts is unsafe (syncer/attempts.py):
        # capped detail, and totals; held ones are not sent, the others are sent by choice.
        self.unsafe = tuple(unsafe)
        self.unsafe_total = unsafe_total
        self.held_total = held_total
        self._prediction = prediction

    @property
    def summaries(self) -> tuple[IntegrationSummary, ...]:
        """The per-integration summaries (the same as ``integrations``)."""
        return self.integrations

    def invalid_tolerated(self, integration: str) -> bool:
        """True when the integration's invalid rows stay within its ``tolerate_invalid``."""
        return self._tolerated.get(integration, self.summary(integration).invalid == 0)

    @property
    def has_changes(self) -> bool:
        """True when any integration has something to send."""
        return any(s.has_changes for s in self.integrations)

    @property
    def changes_total(self) -> int:
        """Records the plan sends, all integrations and kinds together."""
        return sum(s.courses.to_send + s.stats.to_send + s.archives for s in self.integrations)

    @property
    def guard_violations(self) -> list[str]:
        """Mass-archive guard messages (the engine raises GuardError unless allowed)."""
        return [s.guard for s in self.integrations if s.guard]

    def summary(self, integration: str) -> IntegrationSummary:
        """The summary of one integration."""
        for s in self.integrations:
            if s.name == integration:
                return s
        raise KeyError(integration)

    def batches(self, integration: str) -> Iterator[tuple[OperationType, list[Record]]]:
        """Stream the bulk calls of one integration: courses, then statistics, then archives."""
        summary = self.summary(integration)
        sizes = self.batch_sizes
        if summary.courses.to_send:
            yield from self._chunks(integration, RecordKind.COURSE, sizes.courses)
        if summary.stats.to_send:
            yield from self._chunks(integration, RecordKind.STAT, sizes.stats)
        if summary.archives:
            yield from self._chunks(integration, RecordKind.ARCHIVE, sizes.archives)

    def _chunks(
        self, integration: str, kind: RecordKind, size: int
    ) -> Iterator[tuple[OperationType, list[Record]]]:
        op_type = _OP_OF_KIND[kind]
        batch: list[Record] = []
        pair: list[Record] = []
        for record in self._stream(integration, kind):
            if pair and record.group != pair[0].group:
                batch = yield from _add_pair(batch, pair, size, op_type)
                pair = []
            pair.append(record)
        if pair:
            batch = yield from _add_pair(batch, pair, size, op_type)
        if batch:
            yield op_type, batch

    def _stream(self, integration: str, kind: RecordKind) -> Iterator[Record]:
        ledger, conn, s, a = self._attached()
        if kind is RecordKind.ARCHIVE:
            query = (
                select(s.c.key, s.c.origin)
                .where(s.c.integration == integration, s.c.kind == kind.value, s.c.state == _OK)
                .order_by(s.c.key)
            )
            with ledger.translate_errors("reading the plan"):
                for key, origin in conn.execute(query):
                    body = {"externalId": key}
                    yield Record(integration, kind, key, body, content_hash(body), origin)
            return
        order = (s.c.grp, s.c.ord, s.c.key) if kind is RecordKind.STAT else (s.c.key,)
        query = (
            select(s.c.key, s.c.hash, s.c.payload, s.c.origin, s.c.grp, s.c.ord, s.c.activity, s.c.digest)
            .select_from(a.join(s, s.c.id == a.c.id))
            .where(s.c.integration == integration, s.c.kind == kind.value, a.c.action.in_(_SENDS))
            .order_by(*order)
        )
        with ledger.translate_errors("reading the plan"):
            # Options per statement: Connection.execution_options() would set them on the plan's
            # connection for good, and on PostgreSQL every later statement (DDL too) would then
            # run through a server-side cursor.
            result = conn.execute(query, execution_options={"yield_per": 2000})
            for row in result:
                key, hash_, payload, origin, grp, ord_, activity, digest = cast(tuple[Any, ...], row)
                yield Record(
                    integration, kind, key, orjson.loads(payload), hash_, origin, grp, ord_, activity, digest
                )

    def effects(self) -> Iterator[tuple[str, str, Effect]]:
        """(integration, key, predicted effect) of every statistic the plan sends or holds."""
        ledger, conn, s, _a = self._attached()
        if self._prediction is None:
            return
        with ledger.translate_errors("reading the plan"):
            yield from self._prediction.effects(conn, s)

    def remember_digests(self) -> int:
        """Record in the ledger the source digest of the unchanged records that were mapped.

        A row can change without its record changing (a column the mapping does not read, a
        config edit, a ledger from before digests): its record keeps the digest of the row it
        was sent from, and the row is mapped again on every plan until the digest is updated.
        ``apply`` calls this under its lock; it changes no plan, so the ledger generation stays.
        Returns the number of records updated.
        """
        ledger, conn, s, a = self._attached()
        r = records.c
        stmt = (
            update(records)
            .where(
                r.integration == s.c.integration,
                r.kind == s.c.kind,
                r.key == s.c.key,
                s.c.state == _OK,
                s.c.kind != RecordKind.ARCHIVE.value,
                s.c.digest.is_not(None),
                r.status == RecordStatus.SYNCED,
                r.hash == s.c.hash,
                r.source_digest.is_distinct_from(s.c.digest),
                ~exists().where(a.c.id == s.c.id),  # unchanged: no action
            )
            .values(source_digest=s.c.digest)
        )
        with ledger.translate_errors("recording source digests"):
            try:
                count = conn.execute(stmt).rowcount
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return max(0, count or 0)

    def _attached(self) -> tuple[Ledger, Connection, Table, Table]:
        if self._ledger is None or self._conn is None or self._staged is None or self._actions is None:
            raise PlanError("this plan holds no staged records (discarded, or read back from a file)")
        return self._ledger, self._conn, self._staged, self._actions

    def discard(self) -> None:
        """Drop the staging table and give the connection back."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # Temporary tables go with their session: closing the driver connection (instead of
            # returning it to the pool) drops them without walking a million-row B-tree.
            conn.invalidate()
        except SQLAlchemyError:
            pass
        finally:
            conn.close()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _add_pair(
    batch: list[Record], pair: list[Record], size: int, op_type: OperationType
) -> Generator[tuple[OperationType, list[Record]], None, list[Record]]:
    """Add one (course, user) pair to the batch, flushing first so the pair stays together."""
    if batch and len(batch) + len(pair) > size:
        yield op_type, batch
        batch = []
    for record in pair:  # a pair bigger than a whole batch has to be split, in order
        batch.append(record)
        if len(batch) >= size:
            yield op_type, batch
            batch = []
    return batch


def _joined(left: Any, s: Table | None = None) -> Any:
    s = left if s is None else s
    return left.outerjoin(
        records,
        and_(records.c.integration == s.c.integration, records.c.kind == s.c.kind, records.c.key == s.c.key),
    )


def _action(s: Table, retry_rejected: bool) -> ColumnElement[str]:
    """What a staged record needs, against the ledger's last state of it."""
    r = records.c
    return case(
        (r.id.is_(None), literal(ChangeAction.NEW.value)),
        # A course archived earlier and back in the source is imported anew.
        (and_(s.c.kind == RecordKind.COURSE.value, r.status == RecordStatus.SYNCED, r.live == false()),
         literal(ChangeAction.NEW.value)),
        (r.hash != s.c.hash, literal(ChangeAction.CHANGED.value)),
        (r.status == RecordStatus.PENDING, literal(ChangeAction.RESEND.value)),
        (r.status == RecordStatus.REJECTED,
         literal(ChangeAction.RETRY.value if retry_rejected else _SKIPPED)),
        else_=literal(_UNCHANGED),
    )  # fmt: skip


# -- building -------------------------------------------------------------------------------


def build_plan(
    config: Config,
    ledger: Ledger,
    *,
    integrations: Sequence[str] | None = None,
    retry_rejected: bool = False,
    detail_limit: int = DETAIL_LIMIT,
) -> Plan:
    """Map every selected integration's sources and compare them with the ledger."""
    from syncer.plan.streams import FileStream, stage_runs

    names = select_integrations(config, integrations)
    desired: list[Desired] = []
    for name in names:
        integration = config.integrations[name]
        for kind, spec in ((RecordKind.COURSE, integration.courses), (RecordKind.STAT, integration.stats)):
            if spec is None:
                continue
            source = config.sources[spec.source]
            by_digest = source.kind is not SourceKind.SQL
            desired.append(
                Desired(
                    name,
                    kind,
                    () if by_digest else stage_runs(integration, kind, spec, source),
                    archive_missing=spec.archive_missing and kind is RecordKind.COURSE,
                    tolerance=spec.tolerate_invalid,
                    send_unsafe=kind is RecordKind.STAT and spec.on_unsafe_change is UnsafeChange.SEND,
                    file=FileStream(integration, kind, spec, source) if by_digest else None,
                )
            )
    return plan_records(
        ledger,
        desired,
        integrations=names,
        batch_sizes=config.api.batch_size,
        retry_rejected=retry_rejected,
        detail_limit=detail_limit,
    )


def select_integrations(config: Config, wanted: Sequence[str] | None) -> list[str]:
    """The integrations to plan: all of them, or those named (unknown names are a ConfigError)."""
    if not wanted:
        return list(config.integrations)
    unknown = [n for n in wanted if n not in config.integrations]
    if unknown:
        known = ", ".join(config.integrations) or "none"
        raise ConfigError(f"{config.path}: no integration named {', '.join(unknown)} (known: {known})")
    return list(dict.fromkeys(wanted))


def plan_records(
    ledger: Ledger,
    desired: Iterable[Desired],
    *,
    integrations: Sequence[str] | None = None,
    batch_sizes: BatchSizes | None = None,
    retry_rejected: bool = False,
    detail_limit: int = DETAIL_LIMIT,
) -> Plan:
    """Stage the desired records, resolve duplicates and compare with the ledger in SQL."""
    desired = list(desired)
    names = list(integrations) if integrations is not None else []
    for d in desired:
        if d.integration not in names:
            names.append(d.integration)
    plan_id = uuid.uuid4().hex
    staged, actions = _staging_tables(plan_id)
    generation = ledger.generation()
    with ledger.translate_errors("planning"):
        conn = ledger.engine.connect()
    try:
        with ledger.translate_errors("planning"):
            _sort_threads(conn)
            staged.metadata.create_all(conn)
            conn.commit()
        tally: _Tally = {}
        skims: dict[tuple[str, RecordKind], _Skim] = {}
        with ledger.translate_errors("staging records"):
            insert = _Inserter(conn, staged)
        valid = _stage(ledger, conn, insert, desired, tally, skims, plan_id)
        with ledger.translate_errors("planning"):
            # Covering for the ledger join: read in key order, the probes into the ledger's
            # (integration, kind, key) index go forward instead of jumping around. Built after
            # staging: kept up while inserting (in random key order) it costs twice as much.
            Index(
                None,
                staged.c.integration,
                staged.c.kind,
                staged.c.key,
                staged.c.state,
                staged.c.hash,
                staged.c.digest,
                staged.c.grp,
            ).create(conn)
            _analyze(conn, staged)
        with ledger.translate_errors("planning"):
            _resolve_duplicates(conn, staged, tally)
            for number, d in enumerate(desired):
                if d.kind is RecordKind.COURSE and d.archive_missing and valid[(d.integration, d.kind)]:
                    courses = skims.get((d.integration, d.kind))
                    table = courses.table if courses else None
                    _stage_archives(conn, staged, number, d.integration, retry_rejected, tally, table)
        for _attempt in range(3):
            with ledger.translate_errors("planning"):
                if not _classify(conn, staged, actions, retry_rejected, skims.values()):
                    break
            for skim in skims.values():
                _settle_duplicates(ledger, conn, insert, staged, actions, skim, tally, valid)
            with ledger.translate_errors("planning"):
                conn.execute(actions.delete())
                _resolve_duplicates(conn, staged, tally)
        else:  # pragma: no cover - each round maps every row a duplicate key involves
            raise PlanError("duplicate keys across unchanged and changed rows could not be resolved")
        with ledger.translate_errors("predicting attempts"):
            send_unsafe = {d.integration for d in desired if d.kind is RecordKind.STAT and d.send_unsafe}
            prediction = predict(conn, staged, actions, plan_id, send_unsafe)
        with ledger.translate_errors("planning"):
            _analyze(conn, actions)
            conn.commit()
            summaries = [
                _summarise(conn, staged, actions, name, batch_sizes or BatchSizes(), tally) for name in names
            ]
            # Ids follow the plan's streams unless one was staged again: then sort by stream too.
            restaged = any(skim.restaged for skim in skims.values())
            changes = _details(conn, staged, actions, summaries, detail_limit, restaged)
            invalid_total = sum(n for (_i, _k, state), n in tally.items() if state != _OK)
            invalid = _invalid_detail(conn, staged, detail_limit, restaged) if invalid_total else []
            tolerated = _tolerated(desired, valid, tally)
            unsafe: list[UnsafeStat] = []
            if prediction.unsafe:
                for stat in prediction.unsafe_stats(conn, staged):
                    if len(unsafe) >= detail_limit:
                        break
                    unsafe.append(stat)
            unmapped: dict[str, int] = {}
            for skim in skims.values():
                name = skim.desired.integration
                mapped = skim.total if skim.selected is None else len(skim.selected)
                unmapped[name] = unmapped.get(name, 0) + skim.total - mapped
        # Without invalid rows there is nothing to read: skip a scan of the whole staging table.
        ledger.replace_invalid_rows(
            names, _all_invalid(ledger, conn, staged, restaged) if invalid_total else iter(())
        )
        ledger.replace_held_records(
            names, prediction.unsafe_stats(conn, staged, held=True) if prediction.held else iter(())
        )
        with ledger.translate_errors("planning"):
            conn.rollback()  # end the read transaction: the plan must not pin an old snapshot
            if conn.dialect.name == "sqlite":  # back to the default cache while apply runs
                conn.exec_driver_sql("PRAGMA temp.cache_size=-2000")
    except BaseException:
        conn.invalidate()  # its temporary tables go with it
        conn.close()
        raise
    return Plan(
        ledger=ledger,
        conn=conn,
        staged=staged,
        actions=actions,
        plan_id=plan_id,
        generation=generation,
        summaries=summaries,
        changes=changes,
        invalid_rows=invalid,
        invalid_total=invalid_total,
        batch_sizes=batch_sizes or BatchSizes(),
        retry_rejected=retry_rejected,
        tolerance=tolerated,
        unmapped=unmapped,
        unsafe=unsafe,
        unsafe_total=prediction.unsafe,
        held_total=prediction.held,
        prediction=prediction,
    )


def _tolerated(
    desired: Sequence[Desired], valid: Mapping[tuple[str, RecordKind], int], tally: _Tally
) -> dict[str, bool]:
    """Per integration: do the invalid rows (duplicates included) of each stream stay tolerated?"""
    out: dict[str, bool] = {}
    for d in desired:
        invalid = tally.get((d.integration, d.kind.value, _INVALID), 0)
        duplicates = tally.get((d.integration, d.kind.value, _DUPLICATE), 0)
        # Duplicates were staged as records: the rows read are the records plus the invalid rows.
        total = valid.get((d.integration, d.kind), 0) + invalid
        allowed = d.tolerance.allows(invalid + duplicates, total)
        out[d.integration] = out.get(d.integration, True) and allowed
    return out


_STAGED_COLUMNS = (
    "stream", "integration", "kind", "key", "hash", "payload", "origin",
    "grp", "ord", "activity", "digest", "state", "field", "reason",
)  # fmt: skip
# A StagedRow:
_STAGED_RECORD_COLUMNS = ("key", "hash", "payload", "origin", "grp", "ord", "activity", "digest")


class _Inserter:
    """executemany straight to the driver: SQLAlchemy's per-row parameter handling would cost
    more than the insert itself at a million rows (the statement itself is still SQLAlchemy's).
    On PostgreSQL with psycopg 3 the rows go through ``COPY ... FROM STDIN`` instead, several
    times faster than executemany."""

    def __init__(self, conn: Connection, table: Table) -> None:
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(_STAGED_COLUMNS))
        self._conn = conn
        self._sql = str(compiled)
        self._positional = bool(compiled.positional)
        if self._positional and tuple(compiled.positiontup or ()) != _STAGED_COLUMNS:
            raise LedgerError("staging insert: unexpected parameter order")  # a guard, never seen
        self._copy = _copy_sql(conn, table, _STAGED_COLUMNS)

        self.table = table
        self._stream_sql: dict[tuple[int, str, str], str | None] = {}

    def records(self, stream: int, integration: str, kind: str, rows: list[StagedRow]) -> None:
        """Insert valid records of one stream; SQLite gets the stream's constants as literals.

        Binding three fewer parameters per row saves a third of the insert's time.
        """
        sql = self._stream_sql.get((stream, integration, kind), "")
        if sql == "":
            sql = self._stream_sql[(stream, integration, kind)] = self._literal_sql(stream, integration, kind)
        if sql is None:
            self([(stream, integration, kind, *row, _OK, None, None) for row in rows])
        else:
            self._conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]

    def _literal_sql(self, stream: int, integration: str, kind: str) -> str | None:
        dialect = self._conn.dialect
        if self._copy is not None or dialect.name != "sqlite":
            return None
        constants = {"integration": integration, "kind": kind, "state": _OK}
        # SQLite string literals: quotes doubled, nothing else to escape.
        values: dict[str, Any] = {
            k: literal_column("'" + v.replace("'", "''") + "'") for k, v in constants.items()
        }
        values["stream"] = literal_column(str(int(stream)))
        statement = self.table.insert().values(values)
        compiled = statement.compile(dialect=dialect, column_keys=list(_STAGED_RECORD_COLUMNS))
        if not compiled.positional or tuple(compiled.positiontup or ()) != _STAGED_RECORD_COLUMNS:
            return None
        return str(compiled)

    def __call__(self, rows: list[tuple[Any, ...]]) -> None:
        if self._copy is not None:
            _copy_rows(self._conn, self._copy, rows)
            return
        params: Any = rows if self._positional else [dict(zip(_STAGED_COLUMNS, r, strict=True)) for r in rows]
        self._conn.exec_driver_sql(self._sql, params)


def _copy_sql(conn: Connection, table: Table, columns: Sequence[str]) -> str | None:
    """``COPY table (columns) FROM STDIN`` on PostgreSQL with psycopg 3; None elsewhere."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        return None
    quote = conn.dialect.identifier_preparer.quote
    return f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"


def _copy_rows(conn: Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
    if not conn.in_transaction():
        conn.begin()  # so that the plan's next commit (or rollback) covers these rows
    driver: Any = conn.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        # Raised by the driver itself, past SQLAlchemy: wrap it as SQLAlchemy would, so that
        # the ledger's error translation applies.
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from exc


_Tally = dict[tuple[str, str, str], int]
"""Staged rows per (integration, kind, state), kept as they are written: the summaries then
need no scan of a million-row staging table."""


def _stage(
    ledger: Ledger,
    conn: Connection,
    insert: _Inserter,
    desired: Sequence[Desired],
    tally: _Tally,
    skims: dict[tuple[str, RecordKind], _Skim],
    plan_id: str,
) -> dict[tuple[str, RecordKind], int]:
    """Fill the staging table from the mapping streams; count valid records per stream.

    A file stream is read by digest first (``_skim``): the rows whose digest the ledger knows as
    synced count as valid and unchanged without being mapped or staged.
    """
    valid: dict[tuple[str, RecordKind], int] = {}
    for number, d in enumerate(desired):
        name, kind = d.integration, d.kind.value
        skipped = 0
        if d.file is None:
            count, invalid = _stage_items(ledger, insert, number, name, kind, d.items)
        else:
            skim = _skim(ledger, conn, d, number, f"syncer_src_{plan_id[:12]}_{number}")
            if skim is None:  # the file cannot be cut into records: map all of it
                count, invalid = _stage_items(ledger, insert, number, name, kind, d.file.classic())
            elif skim.selected is None:  # nothing to skip: map every row, each with its digest
                count, invalid = _stage_all(ledger, conn, insert, number, d)
            else:
                skims[(name, d.kind)] = skim
                count, invalid = _stage_items(ledger, insert, number, name, kind, d.file.runs(skim.selected))
                skim.staged = (count, invalid)
                skipped = skim.total - len(skim.selected)
        valid[(name, d.kind)] = valid.get((name, d.kind), 0) + count + skipped
        tally[(name, kind, _OK)] = tally.get((name, kind, _OK), 0) + count + skipped
        tally[(name, kind, _INVALID)] = tally.get((name, kind, _INVALID), 0) + invalid
    return valid


def _stage_all(
    ledger: Ledger, conn: Connection, insert: _Inserter, stream: int, d: Desired
) -> tuple[int, int]:
    """Map and stage every row of a file, with digests; the ordinary way if it cannot be cut."""
    from syncer.sources.digest import Unscannable

    assert d.file is not None
    name, kind = d.integration, d.kind.value
    try:
        return _stage_items(ledger, insert, stream, name, kind, d.file.runs(None))
    except Unscannable:
        s = insert.table.c
        with ledger.translate_errors("staging records"):
            conn.execute(insert.table.delete().where(s.integration == name, s.kind == kind))
        return _stage_items(ledger, insert, stream, name, kind, d.file.classic())


def _stage_items(
    ledger: Ledger,
    insert: _Inserter,
    stream: int,
    name: str,
    kind: str,
    items: Iterable[Record | InvalidRow | StagedRow | list[StagedRow]],
) -> tuple[int, int]:
    """Stage one stream's records and invalid rows: (valid records, invalid rows)."""
    count = invalid = 0
    dumps = orjson.dumps
    # Valid records and invalid rows go in separately; each keeps its own order (ids rise
    # with the source's order within each, which is all that duplicates and detail use).
    chunk: list[StagedRow] = []
    bad: list[tuple[Any, ...]] = []
    append = chunk.append
    for item in items:
        if type(item) is list:  # a run of StagedRows
            chunk.extend(item)
        elif type(item) is tuple:  # a StagedRow: key, hash, payload, origin, group, order, activity, digest
            append(item)
        elif type(item) is Record:
            payload = dumps(item.payload).decode()
            append((item.key, item.hash, payload, item.origin, item.group, item.order, item.activity,
                    item.digest))  # fmt: skip
        elif isinstance(item, InvalidRow):
            # A known key keeps its course from being archived.
            bad.append((stream, name, kind, item.key or "", None, None, item.origin, "", "", "", None,
                        _INVALID, item.field, item.reason))  # fmt: skip
            invalid += 1
            continue
        else:
            raise TypeError(f"expected Record or InvalidRow, got {type(item).__name__}")
        if len(chunk) >= _CHUNK:
            count += len(chunk)
            with ledger.translate_errors("staging records"):
                insert.records(stream, name, kind, chunk)
            chunk.clear()
        if len(bad) >= _CHUNK:
            with ledger.translate_errors("staging records"):
                insert(bad)
            bad.clear()
    count += len(chunk)
    with ledger.translate_errors("staging records"):
        if chunk:
            insert.records(stream, name, kind, chunk)
        if bad:
            insert(bad)
    return count, invalid


@dataclass
class _Skim:
    """A file stream read by digest: its digests' table, the records mapped, what was staged."""

    desired: Desired
    stream: int  # its position in the plan
    table: Table  # (ord, digest) of every record of the file
    chosen: Table  # (ord, digest) of the records to map
    selected: Selection | None  # the same, in ordinal order, for the mapping pass; None: all
    total: int  # records in the file
    staged: tuple[int, int] = (0, 0)  # valid records and invalid rows staged from ``selected``
    restaged: bool = False  # staged again (its ids now follow later streams' ids)


def _digest_table(name: str) -> Table:
    return Table(
        name,
        MetaData(),
        Column("ord", Integer, primary_key=True, autoincrement=False),
        Column("digest", BigInteger, nullable=False),
        prefixes=["TEMPORARY"],
    )


def _skim(ledger: Ledger, conn: Connection, d: Desired, stream: int, name: str) -> _Skim | None:
    """Stage a file's record digests and look them up in the ledger.

    Selects the records to map: those whose digest the ledger does not know as synced (as live,
    for a course), and those sharing a digest with another record (a duplicate key). None when
    the file cannot be cut into records from its bytes (syncer/scan.py).
    """
    from syncer.sources.digest import Unscannable

    assert d.file is not None
    table, chosen = _digest_table(name), _digest_table(f"{name}_map")
    total = 0
    r = records.c
    with ledger.translate_errors("staging digests"):
        synced = select(literal(1)).where(
            r.integration == d.integration, r.kind == d.kind, r.status == RecordStatus.SYNCED
        )
        if conn.execute(synced.limit(1)).first() is None:  # a first plan: every row is new
            return _Skim(d, stream, table, chosen, None, 0)
        table.create(conn)
        chosen.create(conn)
        try:
            total = _stage_digests(conn, table, d.file.digests())
        except Unscannable:
            table.drop(conn)
            chosen.drop(conn)
            return None
        # Probed in digest order, the look-ups walk the ledger's index forward (3-4x faster than
        # in file order). Unique unless two records are the same bytes (rare: tried first, it
        # spares a query for them).
        try:
            with conn.begin_nested():
                Index(None, table.c.digest, unique=True).create(conn)
            distinct = True
        except IntegrityError:
            Index(None, table.c.digest).create(conn)
            distinct = False
        _analyze(conn, table)
        t, c = table.c, chosen.c
        # No need to match integration and kind: the digests are keyed by them (scan.seed).
        known = exists(literal(1)).where(
            r.source_digest == t.digest,
            r.status == RecordStatus.SYNCED,
            *((r.live == true(),) if d.kind is RecordKind.COURSE else ()),
        )
        unknown = select(t.ord, t.digest).where(~known).order_by(t.digest)
        count = conn.execute(chosen.insert().from_select(["ord", "digest"], unknown)).rowcount
        if not distinct:  # one query each: SQLite runs "not known or shared" 2x slower
            shared = select(t.digest).group_by(t.digest).having(func.count() > 1).subquery()
            also = (
                select(t.ord, t.digest)
                .join(shared, shared.c.digest == t.digest)
                .where(~exists(literal(1)).where(c.ord == t.ord))
            )
            count += conn.execute(chosen.insert().from_select(["ord", "digest"], also)).rowcount
        if count * 2 > total:  # mostly new or changed (a config change): map every row
            return _Skim(d, stream, table, chosen, None, total)
        selected = _selection(conn, chosen)
    return _Skim(d, stream, table, chosen, selected, total)


def _selection(conn: Connection, chosen: Table) -> Selection:
    """The records to map, in ordinal order: two arrays of 8 bytes a record, not a list of tuples."""
    from syncer.plan.streams import Selection

    selection = Selection()
    query = select(chosen.c.ord, chosen.c.digest).order_by(chosen.c.ord)
    for rows in conn.execute(query, execution_options={"yield_per": 20_000}).partitions():
        selection.extend(rows)
    return selection


def _settle_duplicates(
    ledger: Ledger,
    conn: Connection,
    insert: _Inserter,
    staged: Table,
    actions: Table,
    skim: _Skim,
    tally: _Tally,
    valid: dict[tuple[str, RecordKind], int],
) -> None:
    """Map the skipped rows whose key a mapped row of the same file also has (the staged rows
    ``_classify`` flagged).

    Such a duplicate key (an unchanged row and another one) is invisible until both are mapped:
    the stream is staged again with both, in file order, and duplicates then resolve as usual.
    Counts move from skipped to staged; the stream's earlier duplicate resolution is undone.
    """
    d = skim.desired
    assert d.file is not None
    name, kind, s = d.integration, d.kind.value, staged.c
    with ledger.translate_errors("planning"):
        added = _also_mapped(conn, staged, actions, d, skim) if skim.staged[0] else 0
        if not added:
            return
        where = (s.integration == name, s.kind == kind)
        before = conn.execute(select(s.state, func.count()).where(*where).group_by(s.state)).all()
        conn.execute(staged.delete().where(*where))
        skim.selected = _selection(conn, skim.chosen)
    for state, n in before:
        tally[(name, kind, state)] -= int(n)
    count, invalid = _stage_items(ledger, insert, skim.stream, name, kind, d.file.runs(skim.selected))
    tally[(name, kind, _OK)] += count - added
    tally[(name, kind, _INVALID)] += invalid
    valid[(name, d.kind)] += count - skim.staged[0] - added
    skim.staged = (count, invalid)
    skim.restaged = True


def _also_mapped(conn: Connection, staged: Table, actions: Table, d: Desired, skim: _Skim) -> int:
    """Choose the skipped records of the staged rows ``_classify`` flagged; returns how many."""
    r, s, t, c = records.c, staged.c, skim.table.c, skim.chosen.c
    query = (
        select(t.ord, t.digest)
        .distinct()
        .select_from(
            actions.join(staged, s.id == actions.c.id)
            .join(records, and_(r.integration == s.integration, r.kind == s.kind, r.key == s.key))
            .join(skim.table, t.digest == r.source_digest)
        )
        .where(
            actions.c.action == _ALSO_MAPPED,
            s.integration == d.integration,
            s.kind == d.kind.value,
            ~exists(literal(1)).where(c.ord == t.ord),
        )
    )
    added = conn.execute(skim.chosen.insert().from_select(["ord", "digest"], query)).rowcount
    return max(0, added or 0)


def _stage_digests(conn: Connection, table: Table, chunks: Iterator[list[int]]) -> int:
    """Insert the digests chunk by chunk; returns how many. A thread inserts one chunk while
    this one digests the next (SQLite runs without the GIL): a third of the inserts' time is
    hidden. Only that thread uses the connection meanwhile."""
    total = 0
    with ThreadPoolExecutor(1, thread_name_prefix="syncer-digests") as inserter:
        pending: Future[None] | None = None
        try:
            for chunk in chunks:
                if pending is not None:
                    pending.result()
                pending = inserter.submit(_insert_digests, conn, table, total, chunk)
                total += len(chunk)
        finally:
            if pending is not None:
                pending.result()  # raised here if the insert failed; the thread is done either way
    return total


def _insert_digests(conn: Connection, table: Table, first: int, digests: list[int]) -> None:
    """Stage a chunk of digests, the first one at ordinal ``first``."""
    if conn.dialect.name == "sqlite":
        # One JSON array per chunk, unpacked by SQLite itself: twice as fast as executemany.
        quote = conn.dialect.identifier_preparer.quote
        conn.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} (ord, digest) SELECT ? + key, value FROM json_each(?)",
            (first, orjson.dumps(digests).decode()),
        )
        return
    copy = _copy_sql(conn, table, ("ord", "digest"))
    if copy is not None:
        _copy_rows(conn, copy, enumerate(digests, first))
        return
    conn.execute(table.insert(), [{"ord": n, "digest": v} for n, v in enumerate(digests, first)])


def _resolve_duplicates(conn: Connection, s: Table, tally: _Tally) -> None:
    """Keep the row with the latest ``activity`` per key (the later row on a tie)."""
    dup_keys = (
        select(s.c.integration, s.c.kind, s.c.key)
        .where(s.c.state == _OK)
        .group_by(s.c.integration, s.c.kind, s.c.key)
        .having(func.count() > 1)
        .subquery()
    )
    rows = conn.execute(
        select(s.c.id, s.c.integration, s.c.kind, s.c.key, s.c.activity, s.c.origin)
        .join(
            dup_keys,
            and_(
                dup_keys.c.integration == s.c.integration,
                dup_keys.c.kind == s.c.kind,
                dup_keys.c.key == s.c.key,
            ),
        )
        .where(s.c.state == _OK)
        .order_by(s.c.integration, s.c.kind, s.c.key, s.c.id)
    ).all()  # only the duplicated keys' rows: few, unless the source is mostly duplicates
    losers: list[dict[str, Any]] = []
    group: list[Any] = []
    for row in [*rows, None]:
        if group and (row is None or (row.integration, row.kind, row.key) != _key_of(group[0])):
            winner = max(group, key=lambda r: (r.activity, r.id))
            losers.extend(
                {"i": r.id, "why": f"duplicate of {winner.origin}"} for r in group if r is not winner
            )
            integration, kind, _key = _key_of(winner)
            tally[(integration, kind, _OK)] -= len(group) - 1
            tally[(integration, kind, _DUPLICATE)] = (
                tally.get((integration, kind, _DUPLICATE), 0) + len(group) - 1
            )
            group = []
        if row is not None:
            group.append(row)
    if losers:
        conn.execute(
            s.update()
            .where(s.c.id == bindparam("i"))
            .values(state=_DUPLICATE, field=None, reason=bindparam("why")),
            losers,
        )


def _key_of(row: Any) -> tuple[str, str, str]:
    return (row.integration, row.kind, row.key)


def _stage_archives(
    conn: Connection,
    s: Table,
    stream: int,
    integration: str,
    retry_rejected: bool,
    tally: _Tally,
    skim: Table | None,
) -> None:
    """Stage the live courses the source no longer has.

    All staged keys count as present, and so do the records whose source row is in the file
    unchanged (its digest is in ``skim``, the file's digests, when it was read by digest).
    """
    r = records.c
    present: ColumnElement[bool] = exists().where(
        s.c.integration == integration, s.c.kind == RecordKind.COURSE.value, s.c.key == r.key
    )
    if skim is not None:
        present = or_(present, exists().where(skim.c.digest == r.source_digest))
    refused_archive = and_(
        r.status == RecordStatus.REJECTED, operations.c.type == OperationType.ARCHIVE_COURSES
    )
    query = (
        select(
            literal(stream),
            literal(integration),
            literal(RecordKind.ARCHIVE.value),
            r.key,
            r.origin,
            literal(""),
            literal(""),
            literal(""),
            literal(_OK),
        )
        .select_from(records.outerjoin(operations, operations.c.id == r.last_operation_id))
        .where(r.integration == integration, r.kind == RecordKind.COURSE, r.live == true(), ~present)
    )
    if not retry_rejected:
        # An archive the API refused is tried again only on request.
        query = query.where(or_(~refused_archive, operations.c.id.is_(None)))
    added = conn.execute(
        s.insert().from_select(
            ["stream", "integration", "kind", "key", "origin", "grp", "ord", "activity", "state"], query
        )
    ).rowcount
    if added is None or added < 0:  # a driver that does not say: count them
        added = conn.execute(
            select(func.count()).where(s.c.integration == integration, s.c.kind == RecordKind.ARCHIVE.value)
        ).scalar_one()
    key = (integration, RecordKind.ARCHIVE.value, _OK)
    tally[key] = tally.get(key, 0) + int(added)


def _sort_threads(conn: Connection) -> None:
    """SQLite: let big sorts (the digests' and the staged index builds) use helper threads, and
    give the plan's temporary tables a 16 MB page cache.

    The other cores are idle then (mapping workers run at other times); SQLite's default is no
    helper thread, and the index builds are among the longest steps of a plan. The default
    2 MB cache makes every probe of the file's digests and every staged row read a system call
    (16 MB saves 10% of a plan; 64 MB no more, for 50 MB of RSS). Set back to SQLite's default
    once the plan is made: apply holds its batches in memory meanwhile.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA threads={min(4, os.cpu_count() or 1)}")
        conn.exec_driver_sql("PRAGMA temp.cache_size=-16384")


def _analyze(conn: Connection, table: Table) -> None:
    """PostgreSQL: give a freshly filled temporary table statistics (autovacuum never analyzes
    temporary tables); without them the joins below are planned blind and run 2-3x slower."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {conn.dialect.identifier_preparer.quote(table.name)}"))


def _classify(
    conn: Connection, s: Table, a: Table, retry_rejected: bool, skims: Iterable[_Skim] = ()
) -> bool:
    """The one join with the ledger: note what every staged record needs, unless unchanged.

    With files read by digest, also tells whether a staged row has the key of a record whose
    source row was skipped as unchanged (a duplicate key across the two): True then, and the
    caller maps those rows too (``_settle_duplicates``) and classifies again.
    """
    action: ColumnElement[str] = _action(s, retry_rejected)
    r = records.c
    skipped_row = [exists().where(k.table.c.digest == r.source_digest) for k in skims]
    if skipped_row:
        # The record came from another row than this one, and that row is in the file (one
        # probe of the file's digests per staged row whose record has another digest).
        other = r.source_digest.is_distinct_from(s.c.digest)
        s2 = s.alias("mapped")
        row_mapped = exists(literal(1)).where(
            s2.c.integration == s.c.integration,
            s2.c.kind == s.c.kind,
            s2.c.key == s.c.key,
            s2.c.digest == r.source_digest,
        )  # that row is staged too (the stream was staged again): nothing more to map
        also = and_(r.source_digest.is_not(None), other, or_(*skipped_row), ~row_mapped)
        action = case((also, literal(_ALSO_MAPPED)), else_=action)
    action = action.label("action")
    compared = (
        select(s.c.id, action, s.c.integration, s.c.kind, s.c.grp, r.att_end, r.att_done)
        .select_from(_joined(s))
        .where(s.c.state == _OK, s.c.kind != RecordKind.ARCHIVE.value)
        .order_by(s.c.integration, s.c.kind, s.c.key)
        .subquery()
    )
    c = compared.c
    needed = select(c.id, c.action, c.integration, c.kind, c.grp, c.att_end, c.att_done).where(
        c.action != _UNCHANGED
    )
    columns = ["id", "action", "integration", "kind", "grp", "own_end", "own_done"]
    conn.execute(a.insert().from_select(columns, needed))
    if not skipped_row:
        return False
    return conn.execute(select(a.c.id).where(a.c.action == _ALSO_MAPPED).limit(1)).first() is not None


def _summarise(
    conn: Connection, s: Table, a: Table, name: str, sizes: BatchSizes, tally: _Tally
) -> IntegrationSummary:
    by_kind: dict[str, dict[str, int]] = {RecordKind.COURSE.value: {}, RecordKind.STAT.value: {}}
    for kind, act, count in conn.execute(
        select(a.c.kind, a.c.action, func.count())
        .where(a.c.integration == name)
        .group_by(a.c.kind, a.c.action)
    ):
        by_kind[kind][act] = int(count)
    staged_ok = {
        kind: n for (integration, kind, state), n in tally.items() if integration == name and state == _OK
    }
    for kind, found in by_kind.items():
        found[_UNCHANGED] = int(staged_ok.get(kind, 0)) - sum(found.values())
    archives = int(staged_ok.get(RecordKind.ARCHIVE.value, 0))
    invalid = sum(
        n for (integration, _kind, state), n in tally.items() if integration == name and state != _OK
    )
    live = int(
        conn.execute(
            select(func.count()).where(
                records.c.integration == name, records.c.kind == RecordKind.COURSE, records.c.live == true()
            )
        ).scalar_one()
    )
    courses, stats = _counts(by_kind[RecordKind.COURSE.value]), _counts(by_kind[RecordKind.STAT.value])
    batches = {
        OperationType.IMPORT_COURSES.value: -(-courses.to_send // sizes.courses),
        OperationType.IMPORT_STATS.value: _stat_batches(conn, s, a, name, sizes.stats)
        if stats.to_send
        else 0,
        OperationType.ARCHIVE_COURSES.value: -(-archives // sizes.archives),
    }
    guard = None
    if archives > GUARD_MIN and archives > GUARD_SHARE * live:
        guard = (
            f"{name}: the plan archives {archives:,} of {live:,} live courses "
            f"(more than {GUARD_SHARE:.0%} and more than {GUARD_MIN}); "
            "check the courses source, or pass --allow-mass-archive"
        )
    return IntegrationSummary(name, courses, stats, archives, live, invalid, batches, guard)


def _counts(found: Mapping[str, int]) -> KindCounts:
    return KindCounts(
        new=found.get(ChangeAction.NEW.value, 0),
        changed=found.get(ChangeAction.CHANGED.value, 0),
        resend=found.get(ChangeAction.RESEND.value, 0),
        retry=found.get(ChangeAction.RETRY.value, 0),
        unchanged=found.get(_UNCHANGED, 0),
        skipped=found.get(_SKIPPED, 0),
        held=found.get(ChangeAction.HELD.value, 0),
    )


def _stat_batches(conn: Connection, s: Table, a: Table, name: str, size: int) -> int:
    """The exact number of statistics calls: pairs are packed whole, as ``Plan.batches`` does."""
    pairs = conn.execute(
        select(func.count())
        .where(a.c.integration == name, a.c.kind == RecordKind.STAT.value, a.c.action.in_(_SENDS))
        .group_by(a.c.grp)
        .order_by(a.c.grp),
        execution_options={"yield_per": 5000},
    )
    batches, filled = 0, 0
    for (count,) in pairs:
        if filled and filled + count > size:
            batches, filled = batches + 1, 0
        filled += count
        while filled >= size:
            batches, filled = batches + 1, filled - size
    return batches + (1 if filled else 0)


def _details(
    conn: Connection,
    s: Table,
    a: Table,
    summaries: Sequence[IntegrationSummary],
    limit: int,
    restaged: bool = False,
) -> list[Change]:
    """Capped detail per action: changed records with their fields, archives, then the others."""
    out: list[Change] = []
    totals = {
        ChangeAction.CHANGED: sum(x.courses.changed + x.stats.changed for x in summaries),
        ChangeAction.ARCHIVE: sum(x.archives for x in summaries),
        ChangeAction.NEW: sum(x.courses.new + x.stats.new for x in summaries),
        ChangeAction.RESEND: sum(x.courses.resend + x.stats.resend for x in summaries),
        ChangeAction.RETRY: sum(x.courses.retry + x.stats.retry for x in summaries),
    }
    for act, total in totals.items():
        if not total or limit <= 0:
            continue
        if act is ChangeAction.ARCHIVE:
            archives = (
                select(s.c.integration, s.c.key, s.c.origin)
                .where(s.c.kind == RecordKind.ARCHIVE.value, s.c.state == _OK)
                .order_by(s.c.integration, s.c.key)
                .limit(limit)
            )
            for integration, key, origin in conn.execute(archives):
                out.append(Change(integration, RecordKind.COURSE, key, act, origin))
            continue
        query = (
            select(s.c.integration, s.c.kind, s.c.key, s.c.origin, s.c.payload, records.c.payload)
            .select_from(_joined(a.join(s, s.c.id == a.c.id), s))
            .where(a.c.action == act.value)
            .order_by(*((s.c.stream, a.c.id) if restaged else (a.c.id,)))
            .limit(limit)
        )
        for integration, kind, key, origin, new, old in conn.execute(query):
            fields = _field_changes(old, orjson.loads(new)) if act is ChangeAction.CHANGED else ()
            out.append(Change(integration, RecordKind(kind), key, act, origin, fields))
    return out


def _field_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    old = old or {}
    return tuple(
        FieldChange(name, old.get(name), new.get(name))
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    )


def _invalid_query(s: Table, restaged: bool) -> Any:
    return (
        select(s.c.integration, s.c.kind, s.c.origin, s.c.field, s.c.reason, s.c.key)
        .where(s.c.state != _OK)
        .order_by(*((s.c.stream, s.c.id) if restaged else (s.c.id,)))
    )


def _invalid_row(row: Any) -> InvalidRow:
    integration, kind, origin, field_, reason, key = row
    return InvalidRow(integration, RecordKind(kind), origin, field_, reason or "", key or None)


def _invalid_detail(conn: Connection, s: Table, limit: int, restaged: bool) -> list[InvalidRow]:
    return [_invalid_row(r) for r in conn.execute(_invalid_query(s, restaged).limit(limit))]


def _all_invalid(ledger: Ledger, conn: Connection, s: Table, restaged: bool) -> Iterator[InvalidRow]:
    with ledger.translate_errors("reading invalid rows"):
        for row in conn.execute(_invalid_query(s, restaged), execution_options={"yield_per": 5000}):
            yield _invalid_row(row)

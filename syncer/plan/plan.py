"""The Plan: what a plan found, in numbers and capped detail, and the stream of its batches.

A Plan built by ``plan_records`` (syncer/plan/build.py) holds the connection to the ledger
database where its staged records live; ``Plan.batches`` reads them back as bulk calls, in the
order product.md §4 asks for. A Plan read back from a file, or built by tests, is detached:
numbers and detail only.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, and_, exists, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from syncer.config import BatchSizes
from syncer.errors import PlanError
from syncer.ledger import DriftInfo, Ledger
from syncer.ledger.planning import remember_digests
from syncer.models import (
    CanonicalJson,
    Change,
    Effect,
    IntegrationSummary,
    InvalidRow,
    OperationType,
    Record,
    RecordKind,
    UnsafeStat,
    content_hash,
)
from syncer.plan.attempts import Prediction
from syncer.plan.reads import Read
from syncer.plan.summary import API_MAXIMUM, tail_merges
from syncer.plan.tables import OK, SENDS

__all__ = ["BlockReason", "Blocker", "Plan"]

_OP_OF_KIND = {
    RecordKind.COURSE: OperationType.IMPORT_COURSES,
    RecordKind.STAT: OperationType.IMPORT_STATS,
    RecordKind.ARCHIVE: OperationType.ARCHIVE_COURSES,
}


class BlockReason(StrEnum):
    """Why apply would not end cleanly with a plan (``Plan.blockers``)."""

    MASS_ARCHIVE = "mass_archive"  # the mass-archive guard refuses it
    INVALID = "invalid_beyond_tolerance"  # more invalid rows than tolerate_invalid allows
    HELD = "held"  # statistics held: not sent, a person must decide


@dataclass(frozen=True)
class Blocker:
    """One reason apply would stop or end in failure with this plan, with its message."""

    integration: str
    reason: BlockReason
    message: str


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
        generations: Mapping[str, int] | None = None,
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
        # Per integration of the plan: the ledger generation it was computed from (a saved plan
        # is stale once one of them moved); ``generation`` is their sum.
        self.generations: dict[str, int] = dict(generations or {})
        self.integrations = tuple(summaries)
        self.changes = tuple(changes)
        self.invalid_rows = tuple(invalid_rows)
        self.invalid_total = invalid_total
        self.batch_sizes = batch_sizes or BatchSizes()
        self.retry_rejected = retry_rejected
        self._tolerated = dict(tolerance or {})
        # Per integration: source rows known unchanged by their digest, hence not mapped.
        self.unmapped: dict[str, int] = dict(unmapped or {})
        # Statistics whose predicted effect on the platform's attempts is unsafe (syncer/plan/attempts.py):
        # capped detail, and totals; held ones are not sent, the others are sent by choice.
        self.unsafe = tuple(unsafe)
        self.unsafe_total = unsafe_total
        self.held_total = held_total
        self._prediction = prediction
        # What the ledger knows of the platform (docs/refresh.md): keys renamed in the config
        # (new -> old: records kept), integrations no longer in the config, and what the last
        # refresh found different from the ledger.
        self.renamed: dict[str, str] = {}
        self.orphans: tuple[str, ...] = ()
        self.drift: tuple[DriftInfo, ...] = ()
        # How each incremental SQL source was read (syncer/plan/reads.py): apply records their cursors.
        self.reads: tuple[Read, ...] = ()

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
        """Mass-archive guard messages (apply raises GuardError unless allowed)."""
        return [s.guard for s in self.integrations if s.guard]

    def blockers(self, *, allow_mass_archive: bool = False) -> list[Blocker]:
        """What apply would stop at (the mass-archive guard, unless allowed) or end in failure for
        (invalid rows beyond tolerance, held statistics), per integration, in that order."""
        out: list[Blocker] = []
        for s in self.integrations:
            if s.guard and not allow_mass_archive:  # the guard apply checks: plan/summary.py
                out.append(Blocker(s.name, BlockReason.MASS_ARCHIVE, s.guard))
        for s in self.integrations:
            if not self.invalid_tolerated(s.name):
                rows = f"{s.invalid:,} invalid row" + ("" if s.invalid == 1 else "s")
                out.append(
                    Blocker(
                        s.name,
                        BlockReason.INVALID,
                        f"{s.name}: {rows}, more than tolerate_invalid allows (listed below)",
                    )
                )
            if s.stats.held:
                held = f"{s.stats.held:,} statistic" + (" is" if s.stats.held == 1 else "s are")
                out.append(
                    Blocker(
                        s.name,
                        BlockReason.HELD,
                        f"{s.name}: {held} held, a person must decide (listed below)",
                    )
                )
        return out

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
            yield from self._chunks(integration, RecordKind.COURSE, sizes.courses, summary.courses.to_send)
        if summary.stats.to_send:
            yield from self._chunks(integration, RecordKind.STAT, sizes.stats, summary.stats.to_send)
        if summary.archives:
            yield from self._chunks(integration, RecordKind.ARCHIVE, sizes.archives, summary.archives)

    def _chunks(
        self, integration: str, kind: RecordKind, size: int, total: int
    ) -> Iterator[tuple[OperationType, list[Record]]]:
        """The batches of one kind; a small tail is merged into the batch before it (``merge_tail``)."""
        yield from merge_tail(self._cut(integration, kind, size), size, _API_MAXIMUM[kind], total)

    def _cut(
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
                .where(s.c.integration == integration, s.c.kind == kind.value, s.c.state == OK)
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
            .where(s.c.integration == integration, s.c.kind == kind.value, a.c.action.in_(SENDS))
            .order_by(*order)
        )
        with ledger.translate_errors("reading the plan"):
            # Options per statement: Connection.execution_options() would set them on the plan's
            # connection for good, and on PostgreSQL every later statement (DDL too) would then
            # run through a server-side cursor.
            result = conn.execute(query, execution_options={"yield_per": 2000})
            for row in result:
                key, hash_, payload, origin, grp, ord_, activity, digest = cast(tuple[Any, ...], row)
                yield Record(  # the payload stays the staged canonical text (CanonicalJson)
                    integration, kind, key, CanonicalJson(payload), hash_, origin, grp, ord_, activity, digest
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
        unchanged = and_(
            s.c.state == OK,
            s.c.kind != RecordKind.ARCHIVE.value,
            ~exists().where(a.c.id == s.c.id),  # unchanged: no action
        )
        with ledger.translate_errors("recording source digests"):
            return remember_digests(conn, s, unchanged)

    def staging(self) -> tuple[Connection, Table]:
        """The plan's connection and its staged records (syncer/refresh reads them; temporary
        tables it makes there go with the plan)."""
        _ledger, conn, staged, _actions = self._attached()
        return conn, staged

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


_API_MAXIMUM = {
    RecordKind.COURSE: API_MAXIMUM.courses,
    RecordKind.STAT: API_MAXIMUM.stats,
    RecordKind.ARCHIVE: API_MAXIMUM.archives,
}


def merge_tail(
    batches: Iterator[tuple[OperationType, list[Record]]], size: int, maximum: int, total: int | None = None
) -> Iterator[tuple[OperationType, list[Record]]]:
    """Yield ``batches`` one behind, and the last one appended to the one before when it is a small
    tail (at most 1% of ``size``) and both fit in ``maximum`` together: one operation less, each
    holding a slot for a fixed time whatever its size.

    Both are of one type and one integration, consecutive in plan order, and the tail is appended
    after the batch in that order: a (course, learner) pair split across them comes back together,
    its statistics still in ``firstActivityAt`` order (product.md §4).

    With ``total``, the records the batches hold in all (the plan's count), a batch is held back
    only when what is left after it could be a small tail: a 10,000-record batch of Records is
    about 10 MB, and apply would otherwise always have one more in memory. A wrong ``total``
    costs at most a tail sent on its own, never a batch too large or out of order.
    """
    pending: list[tuple[OperationType, list[Record]]] = []  # not yet yielded, at most the last two
    seen = 0  # records in the batches read so far

    def final(first: list[Record], second: list[Record] | None) -> bool:
        # ``first`` can no longer take a tail: none fits in it, or the next batch is not one
        # (the rule that the plan's summary counts with too: summary.tail_merges); known from
        # ``total`` before the next batch is read when more than a small tail is left after it.
        if second is None and total is not None and not tail_merges(len(first), total - seen, size, maximum):
            return total - seen > 0
        return not tail_merges(len(first), 1 if second is None else len(second), size, maximum)

    for batch in batches:
        seen += len(batch[1])
        pending.append(batch)
        while pending and (
            len(pending) > 2 or final(pending[0][1], pending[1][1] if len(pending) == 2 else None)
        ):
            yield pending.pop(0)
    if len(pending) == 2:  # the last batch is a small tail that fits in the one before
        (op_type, before), (_, tail) = pending
        yield op_type, before + tail
        return
    yield from pending


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

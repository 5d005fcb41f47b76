"""Where incremental SQL sources start their next read: ``source_cursors`` (docs/incremental.md).

A cursor is read by the planner (``cursor_of``) and moved by apply (``move_cursor``) once every
record of the read is recorded; plan never moves it. It moves forward only: a saved plan applied
late, or a read that found nothing new, never takes it back (a full read after the query
changed starts it over).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, select

from syncer.ledger.platform import LedgerPlatform
from syncer.ledger.schema import drift_table, records, source_cursors_table
from syncer.ledger.writes import _now, _upsert, bump_generations
from syncer.sources.incremental import decode, encode

__all__ = ["CursorInfo", "LedgerCursors"]


@dataclass(frozen=True)
class CursorInfo:
    """One stream's cursor as the ledger holds it."""

    integration: str
    kind: str
    source: str
    query_digest: str
    value: Any  # None: the source had no row yet
    full_read_at: datetime | None
    moved_at: datetime
    full_due: bool = False  # a full read began sending and did not end well: the next is full too


class LedgerCursors(LedgerPlatform):
    """The ledger's cursors of incremental sources."""

    def cursor_of(self, integration: str, kind: str, source: str) -> CursorInfo | None:
        """The cursor of ``source`` as ``integration`` reads it for ``kind``; None: never read."""
        t = source_cursors_table
        with self.translate_errors("reading the source cursors"), self._engine.connect() as conn:
            key = and_(t.c.integration == integration, t.c.kind == kind, t.c.source == source)
            row = conn.execute(select(t).where(key)).mappings().first()
        return None if row is None else _info(row)

    def stream_state(self, integration: str, kind: str) -> tuple[bool, bool]:
        """Whether the ledger holds any record of ``integration``'s ``kind``, and any drift of it the
        next apply restores: either makes an incremental read miss rows (docs/incremental.md)."""
        r, d = records.c, drift_table.c
        holds = exists().where(r.integration == integration, r.kind == kind)
        restores = exists().where(d.integration == integration, d.kind == kind, d.restore.is_(True))
        with self.translate_errors("reading the source cursors"), self._engine.connect() as conn:
            row = conn.execute(select(holds, restores)).one()
        return bool(row[0]), bool(row[1])

    def cursors(self) -> list[CursorInfo]:
        """Every cursor, by integration, kind and source (for ``syncer status``)."""
        t = source_cursors_table
        with self.translate_errors("reading the source cursors"), self._engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.integration, t.c.kind, t.c.source)).mappings().all()
        return [_info(row) for row in rows]

    def move_cursor(
        self,
        integration: str,
        kind: str,
        source: str,
        *,
        query_digest: str,
        value: Any,
        full: bool,
        run_id: int | None = None,
    ) -> bool:
        """Record where the next read of ``source`` starts; False when it stays (never backwards).

        ``full``: the read was a full one (its time is ``full_read_at``). A full read may set a
        smaller value than the one held (rows deleted, the query changed); an incremental one
        never does.
        """
        t = source_cursors_table
        key = and_(t.c.integration == integration, t.c.kind == kind, t.c.source == source)
        with self.translate_errors("recording a source cursor"), self._engine.begin() as conn:
            row = conn.execute(select(t).where(key).with_for_update()).mappings().first()
            held = _info(row) if row is not None else None
            if held is not None and not full and held.query_digest == query_digest:
                behind = held.value is not None and not _after(value, held.value)
                if value is None or behind:
                    return False
            now = _now()
            values = {
                "query_digest": query_digest,
                "value": encode(value) if value is not None else None,  # None: the source had no row
                "full_read_at": now if full else (held.full_read_at if held is not None else None),
                "full_due": False if full else (held.full_due if held is not None else False),
                "moved_at": now,
                "run_id": run_id,
            }
            stmt = _upsert(conn.dialect.name, t)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["integration", "kind", "source"], set_=values),
                {"integration": integration, "kind": kind, "source": source, **values},
            )
            bump_generations(conn, [integration])  # a saved plan read from the old cursor is stale
        return True

    def begin_full_read(self, integration: str, kind: str, source: str, *, query_digest: str) -> None:
        """Mark a full read of ``source`` as begun: until ``move_cursor`` records its end, the next
        read is a full one too (docs/incremental.md).

        Called before the first record of the read is sent: a full read finds rows before the
        cursor (changed without moving it, rejected, held) that an incremental read from the old
        cursor would never read again, were the run killed or an operation failed midway.
        """
        t = source_cursors_table
        now = _now()
        with self.translate_errors("recording a source cursor"), self._engine.begin() as conn:
            stmt = _upsert(conn.dialect.name, t)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["integration", "kind", "source"], set_={"full_due": True}
                ),
                {
                    "integration": integration,
                    "kind": kind,
                    "source": source,
                    "query_digest": query_digest,
                    "value": None,
                    "full_read_at": None,
                    "full_due": True,
                    "moved_at": now,
                    "run_id": None,
                },
            )


def _after(new: Any, old: Any) -> bool:
    try:
        return bool(new > old)
    except TypeError:  # the column's type changed (a text cursor became a timestamp): take it
        return True


def _info(row: Any) -> CursorInfo:
    return CursorInfo(
        integration=row["integration"],
        kind=row["kind"],
        source=row["source"],
        query_digest=row["query_digest"],
        value=decode(row["value"]) if row["value"] is not None else None,
        full_read_at=row["full_read_at"],
        moved_at=row["moved_at"],
        full_due=bool(row["full_due"]),
    )

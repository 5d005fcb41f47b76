"""The digest skim: a file's rows looked up in the ledger by digest, so that unchanged ones are not mapped.

Each record of a CSV or JSON Lines file is cut from its bytes and digested (syncer/sources/
digest.py); the digests are staged in a temporary table and looked up in the ledger's
``records.source_digest``. Only the rows the ledger does not know as synced are selected for
mapping. A key shared by a skipped row and a mapped one only shows once the mapped one is
classified: ``settle_duplicates`` then maps the skipped row too, and the stream is staged again.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import orjson
from sqlalchemy import Index, Table, and_, exists, func, literal, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from syncer.ledger import Ledger, records
from syncer.ledger.planning import COUNTED
from syncer.models import RecordKind, RecordStatus
from syncer.plan.query import QueryStream
from syncer.plan.stage import Desired, Inserter, copy_rows, copy_sql, stage_items
from syncer.plan.streams import Selection
from syncer.plan.tables import ALSO_MAPPED, INVALID, OK, Tally, analyze, digest_table
from syncer.sources.digest import Unscannable

__all__ = ["Skim", "settle_duplicates", "skim_file"]


@dataclass
class Skim:
    """A file stream read by digest: its digests' table, the records mapped, what was staged."""

    desired: Desired
    stream: int  # its position in the plan
    table: Table  # (ord, digest) of every record of the file
    chosen: Table  # (ord, digest) of the records to map
    selected: Selection | None  # the same, in ordinal order, for the mapping pass; None: all
    total: int  # records in the file
    staged: tuple[int, int] = (0, 0)  # valid records and invalid rows staged from ``selected``
    restaged: bool = False  # staged again (its ids now follow later streams' ids)


def skim_file(ledger: Ledger, conn: Connection, d: Desired, stream: int, name: str) -> Skim | None:
    """Stage a file's record digests and look them up in the ledger.

    Selects the records to map: those whose digest the ledger does not know as synced (as live,
    for a course), and those sharing a digest with another record (a duplicate key). None when
    the file cannot be cut into records from its bytes (syncer/sources/digest.py).
    """
    assert d.file is not None
    table, chosen = digest_table(name), digest_table(f"{name}_map")
    total = 0
    r = records.c
    with ledger.translate_errors("staging digests"):
        synced = select(literal(1)).where(
            r.integration == d.integration, r.kind == d.kind, r.status == RecordStatus.SYNCED
        )
        if conn.execute(synced.limit(1)).first() is None:  # a first plan: every row is new
            return Skim(d, stream, table, chosen, None, 0)
        table.create(conn)
        chosen.create(conn)
        try:
            if isinstance(d.file, QueryStream):  # digested on the server, nothing crosses the wire
                total = d.file.fill(conn, table)
            else:
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
        analyze(conn, table)
        t, c = table.c, chosen.c
        # No need to match integration and kind: the digests are keyed by them (digest.seed).
        known = exists(literal(1)).where(
            r.source_digest == t.digest,
            r.status == RecordStatus.SYNCED,
            *((r.live == true(),) if d.kind is RecordKind.COURSE else ()),
        )
        unknown = select(t.ord, t.digest).where(~known).order_by(t.digest)
        count = conn.execute(
            chosen.insert().from_select(["ord", "digest"], unknown), execution_options=COUNTED
        ).rowcount
        if not distinct:  # one query each: SQLite runs "not known or shared" 2x slower
            shared = select(t.digest).group_by(t.digest).having(func.count() > 1).subquery()
            also = (
                select(t.ord, t.digest)
                .join(shared, shared.c.digest == t.digest)
                .where(~exists(literal(1)).where(c.ord == t.ord))
            )
            count += conn.execute(
                chosen.insert().from_select(["ord", "digest"], also), execution_options=COUNTED
            ).rowcount
        if count * 2 > total:  # mostly new or changed (a config change): map every row
            return Skim(d, stream, table, chosen, None, total)
        selected = _selection(conn, chosen)
    return Skim(d, stream, table, chosen, selected, total)


def _selection(conn: Connection, chosen: Table) -> Selection:
    """The records to map, in ordinal order: two arrays of 8 bytes a record, not a list of tuples."""
    selection = Selection()
    query = select(chosen.c.ord, chosen.c.digest).order_by(chosen.c.ord)
    for rows in conn.execute(query, execution_options={"yield_per": 20_000}).partitions():
        selection.extend(rows)
    return selection


def settle_duplicates(
    ledger: Ledger,
    conn: Connection,
    insert: Inserter,
    staged: Table,
    actions: Table,
    skim: Skim,
    tally: Tally,
    valid: dict[tuple[str, RecordKind], int],
) -> None:
    """Map the skipped rows whose key a mapped row of the same file also has (the staged rows
    ``compare.classify`` flagged).

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
    count, invalid = stage_items(ledger, insert, skim.stream, name, kind, d.file.runs(skim.selected))
    tally[(name, kind, OK)] += count - added
    tally[(name, kind, INVALID)] += invalid
    valid[(name, d.kind)] += count - skim.staged[0] - added
    skim.staged = (count, invalid)
    skim.restaged = True


def _also_mapped(conn: Connection, staged: Table, actions: Table, d: Desired, skim: Skim) -> int:
    """Choose the skipped records of the staged rows ``compare.classify`` flagged; returns how many."""
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
            actions.c.action == ALSO_MAPPED,
            s.integration == d.integration,
            s.kind == d.kind.value,
            ~exists(literal(1)).where(c.ord == t.ord),
        )
    )
    added = conn.execute(
        skim.chosen.insert().from_select(["ord", "digest"], query), execution_options=COUNTED
    ).rowcount
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
    copy = copy_sql(conn, table, ("ord", "digest"))
    if copy is not None:
        copy_rows(conn, copy, enumerate(digests, first))
        return
    conn.execute(table.insert(), [{"ord": n, "digest": v} for n, v in enumerate(digests, first)])

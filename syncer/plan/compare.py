"""The comparison with the ledger: duplicate keys resolved, then one join that notes what each record needs.

Of staged rows that share a key, the one with the latest activity stays a record; the others
become duplicates. Every staged record is then matched with its row in the ledger's ``records``
(by integration, kind and key) and, unless it is unchanged, gets an action in the plan's actions
table (new, changed, resend, retry, or skipped: rejected and not retried), with the attempt the
platform last confirmed for a statistic. A row whose key a skipped row of its file also has is
flagged for the skim to map that row too (syncer/plan/skim.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, case, exists, false, func, literal, or_, select
from sqlalchemy.engine import Connection

from syncer.ledger import records
from syncer.models import ChangeAction, RecordKind, RecordStatus
from syncer.plan.skim import Skim
from syncer.plan.tables import ALSO_MAPPED, DUPLICATE, OK, SKIPPED, UNCHANGED, Tally

__all__ = ["classify", "joined", "resolve_duplicates"]


def joined(left: Any, s: Table | None = None) -> Any:
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
         literal(ChangeAction.RETRY.value if retry_rejected else SKIPPED)),
        else_=literal(UNCHANGED),
    )  # fmt: skip


def classify(conn: Connection, s: Table, a: Table, retry_rejected: bool, skims: Iterable[Skim] = ()) -> bool:
    """The one join with the ledger: note what every staged record needs, unless unchanged.

    With files read by digest, also tells whether a staged row has the key of a record whose
    source row was skipped as unchanged (a duplicate key across the two): True then, and the
    caller maps those rows too (``settle_duplicates``) and classifies again.
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
        action = case((also, literal(ALSO_MAPPED)), else_=action)
    action = action.label("action")
    query = (
        select(s.c.id, action, s.c.integration, s.c.kind, s.c.grp, r.att_end, r.att_done)
        .select_from(joined(s))
        .where(s.c.state == OK, s.c.kind != RecordKind.ARCHIVE.value)
    )
    if conn.dialect.name == "sqlite":  # in key order, its probes walk the ledger's index forward
        query = query.order_by(s.c.integration, s.c.kind, s.c.key)
    # (PostgreSQL joins by hash: a sort of the rows to classify would only spill to disk.)
    compared = query.subquery()
    c = compared.c
    needed = select(c.id, c.action, c.integration, c.kind, c.grp, c.att_end, c.att_done).where(
        c.action != UNCHANGED
    )
    columns = ["id", "action", "integration", "kind", "grp", "own_end", "own_done"]
    conn.execute(a.insert().from_select(columns, needed))
    if not skipped_row:
        return False
    return conn.execute(select(a.c.id).where(a.c.action == ALSO_MAPPED).limit(1)).first() is not None


def resolve_duplicates(conn: Connection, s: Table, tally: Tally) -> None:
    """Keep the row with the latest ``activity`` per key (the later row on a tie)."""
    dup_keys = (
        select(s.c.integration, s.c.kind, s.c.key)
        .where(s.c.state == OK)
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
        .where(s.c.state == OK)
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
            tally[(integration, kind, OK)] -= len(group) - 1
            tally[(integration, kind, DUPLICATE)] = (
                tally.get((integration, kind, DUPLICATE), 0) + len(group) - 1
            )
            group = []
        if row is not None:
            group.append(row)
    if losers:
        conn.execute(
            s.update()
            .where(s.c.id == bindparam("i"))
            .values(state=DUPLICATE, field=None, reason=bindparam("why")),
            losers,
        )


def _key_of(row: Any) -> tuple[str, str, str]:
    return (row.integration, row.kind, row.key)

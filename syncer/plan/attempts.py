"""Predict what the platform does with each statistic a plan would send, in SQL, and hold the unsafe.

The platform matches a statistic to a learner's attempts at a course by time, not by syncer's
key (reference §7): a new attempt when ``forceNew``, when the pair has no attempt, or when
``firstActivityAt`` is later than the end of every attempt; otherwise the non-completed attempts
that end after ``firstActivityAt`` are updated. The attempts syncer knows for a (course, learner)
pair are the statistics of the pair the platform confirmed (``records.att_end``/``att_done``:
the attempt as last confirmed) and, in ``firstActivityAt`` order, what the same plan sends before
(the new state of each earlier statistic that is sent). Against those, each statistic to send
gets one ``Effect`` (docs/attempts.md):

- ``new_attempt``: it opens its own attempt (``forceNew`` on a row never sent, or it starts after
  every known attempt ends);
- ``update``: its own attempt (confirmed, open, ending after it starts) is updated and no other;
- ``duplicate``: its own attempt exists, but the platform would open a second one (the attempt
  is completed, or ``forceNew`` on a row already sent, or it ends before it starts);
- ``overwrites_another``: another open attempt of the pair ends after its ``firstActivityAt``
  and would take its values;
- ``undefined``: no documented branch applies (an attempt ending exactly at ``firstActivityAt``,
  overlap with completed attempts only).

The last three are unsafe: held (their action becomes ``held``: never sent, listed, exit 3)
unless the integration says ``stats.on_unsafe_change: send``.

Holding a statistic removes its new state from what later statistics of the pair meet, which
can make them safe: the prediction is repeated until nothing changes (each round settles at
least the next statistic of every pair; safety only grows as known attempts are removed, so
statistics safe in the first round stay safe). Only the statistics to send and the ledger rows
of their pairs are read, all in the database: nothing per row comes into Python but the unsafe.

Times are compared as text: the mapper writes every date-time as UTC ``YYYY-MM-DDThh:mm:ss.sssZ``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
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
    case,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection

from syncer.ledger import records
from syncer.models import ChangeAction, Effect, RecordKind, UnsafeStat

__all__ = ["MAX_ROUNDS", "Prediction", "predict"]

MAX_ROUNDS = 20
"""Rounds of prediction before the rest of the first round's unsafe statistics are simply held."""

_STAT = RecordKind.STAT.value
_SAFE = [Effect.NEW_ATTEMPT.value, Effect.UPDATE.value]


def _effects_table(plan_id: str) -> Table:
    return Table(
        f"syncer_effects_{plan_id[:12]}",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),  # the staged row's id
        Column("integration", String(255), nullable=False),
        Column("grp", Text, nullable=False),
        Column("fa", Text, nullable=False),  # firstActivityAt
        Column("endv", Text, nullable=False),  # lastActivityAt (the completion date when done)
        Column("done", Boolean, nullable=False),  # progress 100: completed
        Column("force", Boolean, nullable=False),  # forceNew
        Column("action", String(16), nullable=False),  # new, changed, resend, retry
        Column("own_end", Text),  # its own attempt as the platform last confirmed it, if ever
        Column("own_done", Boolean),
        # The worst other attempt it meets (_meets): confirmed in the ledger, and sent before it.
        Column("rcode", Integer),
        Column("scode", Integer),
        Column("effect", String(32)),
        Column("first_effect", String(32)),
        Column("sent", Boolean, nullable=False),  # sent in this plan (safe, or sent by choice)
        Column("other", Text),  # firstActivityAt of the attempt an unsafe effect meets
        prefixes=["TEMPORARY"],
    )


@dataclass
class Prediction:
    """The predicted effects of a plan's statistics (a temporary table on the plan's connection)."""

    table: Table
    unsafe: int  # statistics whose effect is unsafe, held or sent
    held: int  # of which held

    def effects(self, conn: Connection, staged: Table) -> Iterator[tuple[str, str, Effect]]:
        """(integration, key, effect) of every statistic to send or held, in key order."""
        e, s = self.table, staged
        query = (
            select(e.c.integration, s.c.key, e.c.effect)
            .select_from(e.join(s, s.c.id == e.c.id))
            .order_by(e.c.integration, s.c.key)
        )
        for integration, key, effect in conn.execute(query, execution_options={"yield_per": 5000}):
            yield integration, key, Effect(effect)

    def unsafe_stats(
        self, conn: Connection, staged: Table, *, held: bool | None = None
    ) -> Iterator[UnsafeStat]:
        """The unsafe statistics with their reason, in plan order (all, or only held / sent)."""
        e, s = self.table, staged
        query = (
            select(
                e.c.integration, s.c.key, s.c.origin, e.c.action, e.c.effect, e.c.sent, e.c.force,
                e.c.own_end, e.c.own_done, e.c.fa, e.c.other, e.c.grp,
            )
            .select_from(e.join(s, s.c.id == e.c.id))
            .where(e.c.effect.not_in(_SAFE))
            .order_by(s.c.stream, s.c.id)
        )  # fmt: skip
        if held is not None:
            query = query.where(e.c.sent == (false() if held else true()))
        for row in conn.execute(query, execution_options={"yield_per": 2000}):
            integration, key, origin, action, effect, sent, force, own_end, own_done, fa, other, grp = row
            effect = Effect(effect)
            yield UnsafeStat(
                integration,
                key,
                origin,
                ChangeAction(action),
                effect,
                _reason(effect, grp, fa, bool(force), own_end, bool(own_done), other),
                held=not sent,
            )


def predict(
    conn: Connection, staged: Table, actions: Table, plan_id: str, send_unsafe: Collection[str] = ()
) -> Prediction:
    """Give every statistic the plan sends an effect; turn the unsafe ones' action into ``held``.

    ``send_unsafe``: integrations whose unsafe statistics are sent anyway (``on_unsafe_change: send``).
    """
    e, s, a = _effects_table(plan_id), staged, actions
    e.metadata.create_all(conn)
    doc = cast(s.c.payload, JSON) if conn.dialect.name == "postgresql" else type_coerce(s.c.payload, JSON)
    rows = (
        select(
            s.c.id,
            s.c.integration,
            s.c.grp,
            s.c.ord,
            s.c.activity,
            func.coalesce(doc["progress"].as_float(), 0) >= 100,
            func.coalesce(doc["forceNew"].as_boolean(), false()),
            a.c.action,
            a.c.own_end,
            a.c.own_done,
            true(),
        )
        .select_from(a.join(s, s.c.id == a.c.id))
        .where(a.c.kind == _STAT, a.c.action.in_([x.value for x in _SENT_ACTIONS]))
    )
    columns = [
        "id",
        "integration",
        "grp",
        "fa",
        "endv",
        "done",
        "force",
        "action",
        "own_end",
        "own_done",
        "sent",
    ]
    if not conn.execute(e.insert().from_select(columns, rows)).rowcount:
        return Prediction(e, 0, 0)
    Index(None, e.c.integration, e.c.grp, e.c.fa, e.c.sent, e.c.endv, e.c.done).create(conn)
    conn.exec_driver_sql(f"ANALYZE {e.name}")
    codes = _codes(e)
    effect = _effect(e)
    conn.execute(update(e).values(**codes))
    conn.execute(update(e).values(effect=effect))
    conn.execute(update(e).values(first_effect=e.c.effect))
    first_unsafe = e.c.first_effect.not_in(_SAFE)
    if conn.execute(select(e.c.id).where(first_unsafe).limit(1)).first() is None:
        return Prediction(e, 0, 0)  # every statistic is safe: no rounds, nothing to hold
    sending = or_(e.c.effect.in_(_SAFE), e.c.integration.in_(list(send_unsafe)))
    for _round in range(MAX_ROUNDS):
        changed = conn.execute(
            update(e).where(first_unsafe, e.c.sent != sending).values(sent=sending)
        ).rowcount
        if not changed:
            break
        conn.execute(update(e).where(first_unsafe).values(**codes))
        conn.execute(update(e).where(first_unsafe).values(effect=effect))
    else:
        # Not settled (pairs with more unsafe statistics than rounds): hold every statistic the
        # first round found unsafe. Those found safe then met every state, so stay safe.
        conn.execute(update(e).where(first_unsafe).values(effect=e.c.first_effect))
        conn.execute(update(e).where(first_unsafe).values(sent=e.c.integration.in_(list(send_unsafe))))
    unsafe_rows = e.c.effect.not_in(_SAFE)
    conn.execute(update(e).where(unsafe_rows).values(other=_other(e)))
    conn.execute(
        update(a)
        .where(a.c.id.in_(select(e.c.id).where(e.c.sent == false())))
        .values(action=ChangeAction.HELD.value)
    )
    unsafe = int(conn.execute(select(func.count()).where(unsafe_rows)).scalar_one())
    held = int(conn.execute(select(func.count()).where(e.c.sent == false())).scalar_one())
    return Prediction(e, unsafe, held)


_SENT_ACTIONS = (ChangeAction.NEW, ChangeAction.CHANGED, ChangeAction.RESEND, ChangeAction.RETRY)


# How another attempt stands against a statistic's firstActivityAt, at worst: 3 it is open and
# ends after (the platform updates it: "overwrites"), 2 it is open and ends exactly then
# (undocumented), 1 it is completed and does not end before (no documented branch), 0 it ends
# before (the "new attempt" branch still applies).
_OVERWRITES, _TIE, _BLOCKS = 3, 2, 1


def _meets(done: ColumnElement[bool], end: ColumnElement[str], fa: ColumnElement[str]) -> ColumnElement[int]:
    return case(
        (and_(done == false(), end > fa), literal(_OVERWRITES)),
        (and_(done == false(), end == fa), literal(_TIE)),
        (end >= fa, literal(_BLOCKS)),
        else_=literal(0),
    )


def _codes(e: Table) -> dict[str, ColumnElement[int]]:
    """Per statistic, the worst other attempt it meets: confirmed in the ledger, and sent before it.

    The ledger's attempts are the other statistics of the pair the platform confirmed, except
    those the plan updates before this one (their new state is met instead). One correlated
    aggregate each: a probe of the pair's few rows through an index.
    """
    r2, e2, e3 = records.alias("r2"), e.alias("e2"), e.alias("e3")
    updated_before = (
        exists()
        .where(
            e3.c.integration == e.c.integration,
            e3.c.grp == e.c.grp,
            e3.c.fa == r2.c.first_at,
            e3.c.fa < e.c.fa,
            e3.c.sent == true(),
        )
        .correlate_except(e3)  # explicit: a nested EXISTS would otherwise repeat e in its FROM
    )
    in_ledger = (
        select(func.max(_meets(r2.c.att_done, r2.c.att_end, e.c.fa)))
        .where(*_confirmed_in_pair(r2, e), ~updated_before)
        .correlate_except(r2)
        .scalar_subquery()
    )
    sent_before = (
        select(func.max(_meets(e2.c.done, e2.c.endv, e.c.fa)))
        .where(*_sent_before_in_pair(e2, e))
        .correlate_except(e2)
        .scalar_subquery()
    )
    return {"rcode": func.coalesce(in_ledger, 0), "scode": func.coalesce(sent_before, 0)}


def _effect(e: Table) -> ColumnElement[str]:
    """The documented rules (reference §7), from the worst other attempt a statistic meets."""
    worst = case((e.c.rcode > e.c.scode, e.c.rcode), else_=e.c.scode)
    own, fa = e.c.own_end.is_not(None), e.c.fa
    return case(
        (and_(own, or_(e.c.force == true(), e.c.own_done == true())), literal(Effect.DUPLICATE.value)),
        (e.c.force == true(), literal(Effect.NEW_ATTEMPT.value)),
        (worst == _OVERWRITES, literal(Effect.OVERWRITES.value)),
        (and_(own, e.c.own_end < fa, worst == 0), literal(Effect.DUPLICATE.value)),
        (and_(own, or_(e.c.own_end <= fa, worst == _TIE)), literal(Effect.UNDEFINED.value)),
        (own, literal(Effect.UPDATE.value)),
        (worst == 0, literal(Effect.NEW_ATTEMPT.value)),
        else_=literal(Effect.UNDEFINED.value),
    )


def _confirmed_in_pair(r2: Any, e: Table) -> list[ColumnElement[bool]]:
    """Ledger rows ``r2``: the other statistics of the pair that the platform confirmed."""
    return [
        r2.c.integration == e.c.integration,
        r2.c.kind == _STAT,
        r2.c.grp == e.c.grp,
        r2.c.first_at != e.c.fa,
        r2.c.att_end.is_not(None),
    ]


def _sent_before_in_pair(e2: Any, e: Table) -> list[ColumnElement[bool]]:
    """Plan rows ``e2``: the statistics of the pair the plan sends before this one."""
    return [e2.c.integration == e.c.integration, e2.c.grp == e.c.grp, e2.c.fa < e.c.fa, e2.c.sent == true()]


def _other(e: Table) -> ColumnElement[str]:
    """The firstActivityAt of the attempt an unsafe statistic meets (the earliest such).

    For ``overwrites_another`` the open attempt it would overwrite, else one that blocks the
    "new attempt" branch: the same ``_meets`` codes the prediction used.
    """
    r2, e2 = records.alias("r2"), e.alias("e2")
    worst = case((e.c.effect == Effect.OVERWRITES.value, literal(_OVERWRITES)), else_=literal(_BLOCKS))
    in_ledger = (
        select(func.min(r2.c.first_at))
        .where(*_confirmed_in_pair(r2, e), _meets(r2.c.att_done, r2.c.att_end, e.c.fa) >= worst)
        .correlate_except(r2)
        .scalar_subquery()
    )
    in_plan = (
        select(func.min(e2.c.fa))
        .where(*_sent_before_in_pair(e2, e), _meets(e2.c.done, e2.c.endv, e.c.fa) >= worst)
        .correlate_except(e2)
        .scalar_subquery()
    )
    return func.coalesce(in_ledger, in_plan)


def _when(value: str | None) -> str:
    """``2025-03-01T09:00:00.000Z`` as ``2025-03-01T09:00Z`` (seconds and milliseconds when not zero)."""
    if not value:
        return "?"
    if value.endswith(":00.000Z") and len(value) == 24:
        return value[:16] + "Z"
    if value.endswith(".000Z") and len(value) == 24:
        return value[:19] + "Z"
    return value


def _reason(
    effect: Effect,
    grp: str,
    fa: str,
    force: bool,
    own_end: str | None,
    own_done: bool,
    other: str | None,
) -> str:
    """Why a statistic is unsafe, in words an operator can act on."""
    try:
        _ctype, course, _utype, learner = orjson.loads(grp)
    except (ValueError, TypeError):
        course, learner = "?", "?"
    this = f"the attempt of {learner} on {course} started {_when(fa)}"
    if effect is Effect.DUPLICATE:
        if force:
            return f"{this} was sent before; with forceNew the change would open a second attempt"
        if own_done:
            return f"{this} is completed on the platform; sending the change would open a second attempt"
        return f"{this} ends before it starts on the platform; sending the change would open a second attempt"
    if effect is Effect.OVERWRITES:
        return (
            f"the open attempt of {learner} on {course} started {_when(other)} ends after {_when(fa)}: "
            "the platform would overwrite that attempt with this statistic's values"
        )
    if own_end is not None and own_end <= fa:
        return (
            f"{this} ends when it starts; the documented rules do not say which attempt the platform updates"
        )
    return (
        f"the attempt of {learner} on {course} started {_when(other)} ends at or after {_when(fa)} "
        "(completed, or exactly then): the documented rules give neither a new attempt nor an update"
    )

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

Before that, a preflight (``Preflight``, docs/refresh.md) holds what the platform would refuse
whatever its attempts: ``course_missing`` (the course is neither live on the platform, as the
ledger and the last refresh know it, nor imported by the same plan) and, once the platform's
learners were listed (``syncer refresh --users``), ``unknown_learner``. Those are held always and
take no part in the prediction of the others.

The attempts of a pair that no statistic of syncer's made (``foreign_attempts``: opened by a
launch, or by another tool, found by a refresh) are met like confirmed ones.

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
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection

from syncer.ledger import records
from syncer.ledger.planning import COUNTED
from syncer.ledger.schema import foreign_attempts_table, platform_courses_table, platform_users_table
from syncer.models import ChangeAction, Effect, RecordKind, UnsafeStat
from syncer.plan.tables import json_of

__all__ = ["MAX_ROUNDS", "Prediction", "Preflight", "predict"]

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
        Column("pre", String(32)),  # the preflight's effect: the platform would refuse it
        prefixes=["TEMPORARY"],
    )


@dataclass(frozen=True)
class Preflight:
    """What the plan checks before predicting attempts (docs/refresh.md).

    ``courses``: integrations whose statistics need their course live on the platform or
    imported by the same plan; ``learners``: the platform's learners were listed, so a
    statistic of a learner the platform does not have is held.
    """

    courses: frozenset[str] = frozenset()
    learners: bool = False


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
    conn: Connection,
    staged: Table,
    actions: Table,
    plan_id: str,
    send_unsafe: Collection[str] = (),
    preflight: Preflight | None = None,
) -> Prediction:
    """Give every statistic the plan sends an effect; turn the unsafe ones' action into ``held``.

    ``send_unsafe``: integrations whose unsafe statistics are sent anyway (``on_unsafe_change: send``).
    """
    e, s, a = _effects_table(plan_id), staged, actions
    e.metadata.create_all(conn)
    doc = json_of(conn, s.c.payload)
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
    if not conn.execute(e.insert().from_select(columns, rows), execution_options=COUNTED).rowcount:
        return Prediction(e, 0, 0)
    Index(None, e.c.integration, e.c.grp, e.c.fa, e.c.sent, e.c.endv, e.c.done).create(conn)
    conn.exec_driver_sql(f"ANALYZE {e.name}")
    checked = _preflight(conn, e, s, a, preflight or Preflight())
    if checked:  # refused whatever the attempts: held, and met by no other statistic
        conn.execute(update(e).where(e.c.pre.is_not(None)).values(sent=false()))
    codes = _codes(e)
    effect = case((e.c.pre.is_not(None), e.c.pre), else_=_effect(e))
    conn.execute(update(e).values(**codes))
    conn.execute(update(e).values(effect=effect))
    conn.execute(update(e).values(first_effect=e.c.effect))
    first_unsafe = and_(e.c.first_effect.not_in(_SAFE), e.c.pre.is_(None))
    if not checked and conn.execute(select(e.c.id).where(first_unsafe).limit(1)).first() is None:
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
    conn.execute(update(e).where(unsafe_rows, e.c.pre.is_(None)).values(other=_other(e)))
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
    f = foreign_attempts_table.alias("f")
    foreign = (
        select(func.max(_meets(f.c.att_done, f.c.att_end, e.c.fa)))
        .where(*_foreign_in_pair(f, e))
        .correlate_except(f)
        .scalar_subquery()
    )
    sent_before = (
        select(func.max(_meets(e2.c.done, e2.c.endv, e.c.fa)))
        .where(*_sent_before_in_pair(e2, e), e2.c.pre.is_(None))
        .correlate_except(e2)
        .scalar_subquery()
    )
    ledger = case(
        (func.coalesce(foreign, 0) > func.coalesce(in_ledger, 0), func.coalesce(foreign, 0)),
        else_=func.coalesce(in_ledger, 0),
    )
    return {"rcode": ledger, "scode": func.coalesce(sent_before, 0)}


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


def _foreign_in_pair(f: Any, e: Table) -> list[ColumnElement[bool]]:
    """Foreign attempts ``f`` of the pair (made by no statistic of syncer's)."""
    return [f.c.integration == e.c.integration, f.c.grp == e.c.grp, f.c.first_at != e.c.fa]


def _preflight(conn: Connection, e: Table, s: Table, a: Table, preflight: Preflight) -> bool:
    """Note in ``pre`` the statistics the platform would refuse whatever its attempts; True if any."""
    if not preflight.courses and not preflight.learners:
        return False
    grp = json_of(conn, e.c.grp)
    ctype, course = grp[0].as_string(), grp[1].as_string()
    utype, learner = grp[2].as_string(), func.lower(grp[3].as_string())
    checks: list[tuple[ColumnElement[bool], Any]] = []
    if preflight.courses:
        r, pc, s2, a2 = records.alias("rc"), platform_courses_table.alias("pc"), s.alias("s2"), a.alias("a2")
        imported_now = exists().where(
            a2.c.id == s2.c.id,
            s2.c.integration == e.c.integration,
            s2.c.kind == RecordKind.COURSE.value,
            s2.c.key == course,
            a2.c.action.in_([x.value for x in _SENT_ACTIONS]),
        )
        found = exists().where(pc.c.integration == e.c.integration, pc.c.external_id == course)
        published = exists().where(
            pc.c.integration == e.c.integration, pc.c.external_id == course, pc.c.status == "published"
        )
        # ``live`` is set by a successful import only and cleared by an archive: a course whose
        # later edit is pending or was refused is still live with its earlier content.
        live_in_ledger = exists().where(
            r.c.integration == e.c.integration,
            r.c.kind == RecordKind.COURSE.value,
            r.c.key == course,
            r.c.live == true(),
        )
        live = or_(imported_now, published, and_(~found, live_in_ledger))
        missing = and_(e.c.integration.in_(sorted(preflight.courses)), ctype == "externalId", ~live)
        checks.append((missing, literal(Effect.COURSE_MISSING.value)))
    if preflight.learners:
        u = platform_users_table.alias("u")
        known = exists().where(
            u.c.status != "deleted",
            case((utype == "mail", u.c.mail), else_=u.c.user_id) == learner,
        )
        checks.append((~known, literal(Effect.UNKNOWN_LEARNER.value)))
    refused = or_(*(condition for condition, _effect in checks))
    return bool(conn.execute(update(e).where(refused).values(pre=case(*checks, else_=None))).rowcount)


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
    f = foreign_attempts_table.alias("f")
    foreign = (
        select(func.min(f.c.first_at))
        .where(*_foreign_in_pair(f, e), _meets(f.c.att_done, f.c.att_end, e.c.fa) >= worst)
        .correlate_except(f)
        .scalar_subquery()
    )
    return func.coalesce(in_ledger, foreign, in_plan)


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
    if effect is Effect.UNKNOWN_LEARNER:
        return (
            f"{learner} is not a learner of the platform (as of the last `syncer refresh --users`); "
            "sent once the learner exists there and a refresh has seen them"
        )
    if effect is Effect.COURSE_MISSING:
        return (
            f"course {course} is neither live on the platform nor imported by this plan; "
            "sent once the course is imported"
        )
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

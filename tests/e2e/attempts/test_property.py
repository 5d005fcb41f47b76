"""Property: with the default policy, random edits never duplicate or overwrite an attempt.

A random first sync (1-3 attempts per course/learner pair, completed and open, forceNew per row
or not), then random edits (progress, timeSpent, completion, new attempts older, newer and inside
others, forceNew per row), then ``syncer apply``. Afterwards the simulator holds, per pair, one
attempt per row that was ever sent, with that row's values (the edited ones for rows sent, the
previous ones for rows held), no two attempts share a firstActivityAt, apply exits 3 exactly
when something is held, and every statistic sent had the effect the plan predicted.

``SYNCER_ATTEMPT_EXAMPLES`` sets the number of examples (default 12).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncer.models import Effect
from tests.e2e.attempts.conftest import COURSES, PER_ROW, ForceNew, Lab, Row, at

EXAMPLES = int(os.environ.get("SYNCER_ATTEMPT_EXAMPLES", "12"))
LEARNERS = ("ann@acme.example", "bob@acme.example")


@st.composite
def first_sync(draw: st.DrawFn) -> tuple[ForceNew, list[Row]]:
    """Rows of a first sync: per pair 1-3 attempts that do not overlap, in random order."""
    force_new = draw(st.sampled_from([False, True, PER_ROW]))
    rows: list[Row] = []
    for course in COURSES:
        for mail in LEARNERS:
            if not draw(st.booleans()):
                continue
            day = draw(st.integers(0, 3))
            for _ in range(draw(st.integers(1, 3))):
                start = at(days=day, hours=draw(st.integers(8, 12)))
                rows.append(
                    Row(
                        course,
                        mail,
                        start,
                        start + (at(minutes=draw(st.integers(5, 120))) - at()),
                        pct=draw(st.sampled_from([10, 40, 75, 100, 100])),
                        seconds=draw(st.integers(60, 5000)),
                        retake=force_new == PER_ROW and draw(st.booleans()),
                    )
                )
                day += draw(st.integers(1, 4))
    if not rows:
        rows.append(Row(COURSES[0], LEARNERS[0], at(), at(hours=1)))
    return force_new, draw(st.permutations(rows))


@st.composite
def edits(draw: st.DrawFn, rows: list[Row], force_new: ForceNew) -> list[Row]:
    """The source after random edits of the rows and new rows added."""
    out: list[Row] = []
    for row in rows:
        kind = draw(st.sampled_from(["same", "same", "progress", "time", "complete", "reopen"]))
        if kind == "progress":
            row = replace(row, pct=draw(st.integers(1, 99)))
        elif kind == "time":
            row = replace(row, seconds=row.seconds + draw(st.integers(1, 900)))
        elif kind == "complete":
            row = replace(row, pct=100)
        elif kind == "reopen":
            row = replace(row, pct=draw(st.integers(1, 99)))
        out.append(row)
    starts = {(r.course, r.mail, r.start) for r in out}
    for _ in range(draw(st.integers(0, 3))):
        base = draw(st.sampled_from(out))
        where = draw(st.sampled_from(["newer", "older", "inside", "at-end"]))
        if where == "newer":
            start = max(r.end for r in out if r.pair == base.pair) + (
                at(hours=draw(st.integers(1, 48))) - at()
            )
        elif where == "older":
            start = base.start - (at(hours=draw(st.integers(1, 72))) - at())
        elif where == "inside":
            start = base.start + (base.end - base.start) / 2
        else:
            start = base.end
        if (base.course, base.mail, start) in starts:
            continue
        starts.add((base.course, base.mail, start))
        out.append(
            Row(
                base.course,
                base.mail,
                start,
                start + (at(minutes=draw(st.integers(5, 60))) - at()),
                pct=draw(st.sampled_from([20, 60, 100])),
                seconds=draw(st.integers(60, 3000)),
                retake=force_new == PER_ROW and draw(st.booleans()),
            )
        )
    return draw(st.permutations(out))


def _by_pair(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    out: dict[tuple[str, str], list[Row]] = {}
    for row in sorted(rows, key=lambda r: r.start):
        out.setdefault(row.pair, []).append(row)
    return out


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_edits_never_duplicate_or_overwrite_an_attempt(
    make_lab: Callable[..., Lab], data: st.DataObject
) -> None:
    force_new, rows = data.draw(first_sync())
    lab = make_lab()
    lab.write(rows, force_new=force_new)
    assert set(lab.plan().values()) == {Effect.NEW_ATTEMPT}
    assert lab.apply().exit_code == 0, lab.outputs[-1]
    before = lab.attempts()
    assert before == {pair: [r.values() for r in rs] for pair, rs in _by_pair(rows).items()}

    then = data.draw(edits(rows, force_new))
    lab.write(then)
    predicted = lab.plan()
    result = lab.apply()
    held = lab.held()
    assert set(held) <= set(predicted)
    assert all(not predicted[key].safe for key in held)
    assert all(not effect.safe for key, effect in predicted.items() if key in held)
    assert result.exit_code == (3 if held else 0), result.stderr

    after = lab.attempts()
    sent_before = {r.key: r for r in rows}
    expected: dict[tuple[str, str], list[tuple[str, str, float, float]]] = {}
    for pair, pair_rows in _by_pair(then).items():
        values = []
        for row in pair_rows:
            if row.key not in held:
                values.append(row.values())
            elif row.key in sent_before:
                values.append(sent_before[row.key].values())
        if values:
            expected[pair] = values
    for pair, attempts in after.items():
        firsts = [a[0] for a in attempts]
        assert len(firsts) == len(set(firsts)), f"two attempts share a firstActivityAt: {pair} {attempts}"
        assert sorted(attempts) == sorted(expected.get(pair, [])), pair
    assert set(after) == set(expected)
    # Every statistic sent had its predicted effect: a new attempt where none had its start, an
    # update where its own attempt was there.
    for row in then:
        effect = predicted.get(row.key)
        if effect is None or row.key in held:
            continue
        had = any(a[0] == row.first for a in before.get(row.pair, []))
        assert effect is (Effect.UPDATE if had else Effect.NEW_ATTEMPT), (row, effect)

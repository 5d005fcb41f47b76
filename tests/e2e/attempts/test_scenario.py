"""The issue's scenario at a realistic size: a first sync, then 1% random edits.

About 1,200 statistics (pairs of 1-3 attempts, completed and open) are synced; then 1% of the
rows are edited at random (progress, timeSpent, completion, reopening) and a few attempts are
added (older ones, ones inside another). After apply the platform holds exactly one attempt per
source row, every safe edit is applied, every unsafe one is listed with its reason and not
applied, and apply exits 3.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from tests.e2e.attempts.conftest import COURSES, Lab, Row, at


def _first_sync(rng: random.Random) -> list[Row]:
    rows: list[Row] = []
    for learner in range(400):
        mail = f"learner{learner:04d}@acme.example"
        for course in COURSES:
            if rng.random() < 0.25:
                continue
            day = rng.randrange(0, 5)
            for _ in range(rng.randint(1, 3)):
                start = at(days=day, hours=rng.randrange(8, 18), minutes=rng.randrange(60))
                end = start + (at(minutes=rng.randrange(5, 180)) - at())
                pct = rng.choice([10, 35, 60, 90, 100, 100])
                rows.append(Row(course, mail, start, end, pct=pct, seconds=rng.randrange(60, 9000)))
                day += rng.randint(1, 6)
    rng.shuffle(rows)
    return rows


def _edit(rng: random.Random, rows: list[Row]) -> tuple[list[Row], int]:
    out = list(rows)
    picked = rng.sample(range(len(out)), max(1, len(out) // 100))
    for i in picked:
        row = out[i]
        what = rng.choice(["progress", "time", "complete", "reopen"])
        if what == "progress":
            out[i] = replace(row, pct=rng.randrange(1, 100))
        elif what == "time":
            out[i] = replace(row, seconds=row.seconds + rng.randrange(1, 600))
        elif what == "complete":
            out[i] = replace(row, pct=100)
        else:
            out[i] = replace(row, pct=rng.randrange(1, 100))
    # Always at least one unsafe edit: a completed attempt whose time is corrected.
    done = next(i for i, row in enumerate(out) if row.pct == 100 and i not in picked)
    out[done] = replace(out[done], seconds=out[done].seconds + 1)
    for n, base in enumerate(rng.sample(rows, 4)):  # attempts added: older ones, ones inside another
        start = base.start - (at(hours=2) - at()) if n % 2 else base.start + (base.end - base.start) / 2
        out.append(Row(base.course, base.mail, start, start + (at(minutes=20) - at()), pct=50))
    return out, len(picked) + 1


def test_first_sync_then_one_percent_random_edits(make_lab: Callable[..., Lab]) -> None:
    rng = random.Random(20261201)
    rows = _first_sync(rng)
    lab = make_lab()
    lab.write(rows)
    assert lab.apply().exit_code == 0
    first = lab.attempts()
    assert sum(len(a) for a in first.values()) == len(rows)

    then, edited = _edit(rng, rows)
    lab.write(then)
    result = lab.apply()
    held = lab.held()
    assert held, "the scenario always holds at least the corrected completed attempt"
    assert result.exit_code == 3, result.stderr
    assert all(h.reason and h.origin.startswith("stats.csv:") for h in held.values())

    sent = {r.key: r for r in rows}
    after = lab.attempts()
    expected: dict[tuple[str, str], list[tuple[str, str, float, float]]] = {}
    for row in then:
        if row.key not in held:
            expected.setdefault(row.pair, []).append(row.values())  # safe: applied
        elif row.key in sent:
            expected.setdefault(row.pair, []).append(sent[row.key].values())  # held: as before
    assert {p: sorted(a) for p, a in after.items()} == {p: sorted(a) for p, a in expected.items()}
    applied = [r for r in then if r.key in sent and r != sent[r.key] and r.key not in held]
    assert applied and len(applied) + len([k for k in held if k in sent]) == edited

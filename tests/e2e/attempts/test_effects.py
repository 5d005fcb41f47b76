"""Each predicted effect, against what the simulator actually does with the statistic.

Every case syncs a first state, edits the source, and checks the effect the plan predicts for
the edited row. With the default policy an unsafe row is held: not sent, listed with its reason,
apply exits 3 and the platform is unchanged. With ``on_unsafe_change: send`` the same row is sent
and the simulator's outcome is what the effect says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from syncer.models import Effect
from tests.e2e.attempts.conftest import PER_ROW, ForceNew, Lab, Row, at

ANN = "ann@acme.example"
Attempts = dict[tuple[str, str], list[tuple[str, str, float, float]]]

# An open attempt 03-01 09:00 -> 10:00, a completed one the same day, and an open one on 03-05.
OPEN = Row("ACME-1", ANN, at(), at(hours=1))
DONE = Row("ACME-1", ANN, at(), at(hours=1), pct=100)
LATER = Row("ACME-1", ANN, at(days=4), at(days=4, minutes=30))


@dataclass(frozen=True)
class Case:
    """A first state, the source after the edit, the row to watch and what must happen."""

    first: list[Row]
    then: list[Row]
    row: Row  # the edited or added row (as in ``then``)
    effect: Effect
    force_new: ForceNew = False


def _pair(attempts: Attempts, row: Row) -> list[tuple[str, str, float, float]]:
    return attempts.get(row.pair, [])


CASES = {
    "new-attempt-after-every-end": Case([OPEN], [OPEN, LATER], LATER, Effect.NEW_ATTEMPT),
    "new-attempt-first-of-its-pair": Case(
        [OPEN], [OPEN, Row("ACME-2", ANN, at(), at(hours=1))], Row("ACME-2", ANN, at(), at(hours=1)),
        Effect.NEW_ATTEMPT,
    ),
    "update-open-attempt": Case([OPEN], [replace(OPEN, pct=60)], replace(OPEN, pct=60), Effect.UPDATE),
    "update-completes-the-attempt": Case(
        [OPEN, LATER], [replace(LATER, pct=100), OPEN], replace(LATER, pct=100), Effect.UPDATE
    ),
    "duplicate-completed-attempt-edited": Case(
        [DONE], [replace(DONE, seconds=900)], replace(DONE, seconds=900), Effect.DUPLICATE
    ),
    "duplicate-force-new-row-edited": Case(
        [replace(OPEN, retake=True)],
        [replace(OPEN, retake=True, pct=60)],
        replace(OPEN, retake=True, pct=60),
        Effect.DUPLICATE,
        force_new=PER_ROW,
    ),
    "duplicate-force-new-for-every-row": Case(
        [OPEN], [replace(OPEN, pct=60)], replace(OPEN, pct=60), Effect.DUPLICATE, force_new=True
    ),
    "new-attempt-force-new-row-inside-another": Case(
        [OPEN],
        [OPEN, Row("ACME-1", ANN, at(minutes=20), at(minutes=40), retake=True)],
        Row("ACME-1", ANN, at(minutes=20), at(minutes=40), retake=True),
        Effect.NEW_ATTEMPT,
        force_new=PER_ROW,
    ),
    "overwrites-older-edited-while-newer-open": Case(
        [OPEN, LATER], [replace(OPEN, pct=60), LATER], replace(OPEN, pct=60), Effect.OVERWRITES
    ),
    "overwrites-new-row-inside-open-attempt": Case(
        [OPEN],
        [OPEN, Row("ACME-1", ANN, at(minutes=20), at(minutes=40))],
        Row("ACME-1", ANN, at(minutes=20), at(minutes=40)),
        Effect.OVERWRITES,
    ),
    "overwrites-backfilled-older-attempt": Case(
        [LATER],
        [OPEN, LATER],
        OPEN,
        Effect.OVERWRITES,
    ),
    "undefined-starts-when-open-attempt-ends": Case(
        [OPEN],
        [OPEN, Row("ACME-1", ANN, at(hours=1), at(hours=2))],
        Row("ACME-1", ANN, at(hours=1), at(hours=2)),
        Effect.UNDEFINED,
    ),
    "undefined-inside-completed-attempt-only": Case(
        [DONE],
        [DONE, Row("ACME-1", ANN, at(minutes=20), at(minutes=40))],
        Row("ACME-1", ANN, at(minutes=20), at(minutes=40)),
        Effect.UNDEFINED,
    ),
}  # fmt: skip


def _sent_outcome(effect: Effect, row: Row, before: Attempts, after: Attempts) -> None:
    """What the simulator did with the row matches the effect predicted for it."""
    old, new = _pair(before, row), _pair(after, row)
    if effect is Effect.NEW_ATTEMPT:
        assert new == [*old, row.values()]
    elif effect is Effect.UPDATE:
        assert len(new) == len(old)
        assert [a for a in new if a[0] == row.first] == [row.values()]
    elif effect is Effect.DUPLICATE:
        assert len(new) == len(old) + 1
        assert [a[0] for a in new].count(row.first) == 2
    elif effect is Effect.OVERWRITES:
        assert len(new) == len(old)
        changed = [a for a, b in zip(old, new, strict=True) if a != b]
        assert len(changed) == 1 and changed[0][0] != row.first
        assert new[old.index(changed[0])][2:] == row.values()[2:]  # another attempt took its values
    else:  # undefined: the simulator's labelled choice (update the open one, or append)
        # The premise, read from the platform: an attempt of the pair ends at or after its start.
        assert any(a[1] >= row.first for a in old), old
        assert len(new) in (len(old), len(old) + 1)
        assert row.values()[2:] in [a[2:] for a in new]  # the values landed somewhere


@pytest.mark.parametrize("name", list(CASES))
def test_unsafe_effects_are_held_and_safe_ones_sent(make_lab: Callable[..., Lab], name: str) -> None:
    check_case(make_lab(), CASES[name])


def check_case(lab: Lab, case: Case) -> None:
    """Sync ``case.first``, edit to ``case.then``: the row's effect is predicted, held or sent."""
    lab.write(case.first, force_new=case.force_new)
    assert lab.apply().exit_code == 0, lab.outputs[-1]
    before = lab.attempts()
    lab.write(case.then)
    predicted = lab.plan()
    assert predicted[case.row.key] is case.effect
    result = lab.apply()
    after = lab.attempts()
    if case.effect.safe:
        assert result.exit_code == 0, result.stderr
        _sent_outcome(case.effect, case.row, before, after)
        assert lab.held() == {}
    else:
        assert result.exit_code == 3, result.stderr
        held = lab.held()
        assert list(held) == [case.row.key]
        assert held[case.row.key].effect is case.effect
        assert held[case.row.key].origin.startswith("stats.csv:")
        assert ANN in held[case.row.key].reason and "ACME-1" in held[case.row.key].reason
        assert after == before  # nothing was sent
        # Planned again, still held: never sent until it becomes safe.
        assert lab.plan()[case.row.key] is case.effect
        assert lab.apply().exit_code == 3 and lab.attempts() == before


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.effect.safe])
def test_on_unsafe_change_send_gets_the_predicted_outcome(make_lab: Callable[..., Lab], name: str) -> None:
    case = CASES[name]
    lab = make_lab()
    lab.write(case.first, force_new=case.force_new, policy="send")
    assert lab.apply().exit_code == 0
    before = lab.attempts()
    lab.write(case.then)
    assert lab.plan()[case.row.key] is case.effect
    assert lab.apply().exit_code == 0
    assert lab.held() == {}
    _sent_outcome(case.effect, case.row, before, lab.attempts())


def test_held_row_is_sent_once_the_edit_is_reverted_and_never_otherwise(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab()
    lab.write([DONE, LATER])
    assert lab.apply().exit_code == 0
    before = lab.attempts()
    lab.write([replace(DONE, seconds=900), LATER])
    assert lab.apply().exit_code == 3
    lab.write([DONE, LATER])  # reverted: unchanged, nothing to send, nothing held
    assert lab.plan() == {}
    assert lab.apply().exit_code == 0
    assert lab.held() == {} and lab.attempts() == before


def test_a_held_row_does_not_block_the_safe_rows_after_it(make_lab: Callable[..., Lab]) -> None:
    """The older attempt's edit is held; the newer one's own update is then safe and sent."""
    lab = make_lab()
    lab.write([DONE, LATER])
    assert lab.apply().exit_code == 0
    edited_done, edited_later = replace(DONE, seconds=900), replace(LATER, pct=70)
    lab.write([edited_done, edited_later])
    assert lab.plan() == {edited_done.key: Effect.DUPLICATE, edited_later.key: Effect.UPDATE}
    assert lab.apply().exit_code == 3
    assert lab.attempts()[DONE.pair] == [DONE.values(), edited_later.values()]


def test_a_held_edit_keeps_its_old_end_for_the_next_rows(make_lab: Callable[..., Lab]) -> None:
    """A held edit that would move an attempt's end is not counted at its new end."""
    lab = make_lab()
    lab.write([DONE, LATER])
    assert lab.apply().exit_code == 0
    # The completed attempt's edit (held) would end after LATER starts; LATER's own edit is safe.
    stretched = replace(DONE, end=at(days=5), seconds=900)
    lab.write([stretched, replace(LATER, pct=80)])
    predicted = lab.plan()
    assert predicted[stretched.key] is Effect.DUPLICATE
    assert predicted[LATER.key] is Effect.UPDATE


def test_first_sync_in_one_batch_follows_first_activity_order(make_lab: Callable[..., Lab]) -> None:
    """Rows of a pair sent together meet each other in firstActivityAt order."""
    lab = make_lab()
    third = Row("ACME-1", ANN, at(days=9), at(days=9, hours=1), pct=100)
    overlapping = Row("ACME-1", ANN, at(days=9, minutes=30), at(days=9, hours=2))
    lab.write([third, LATER, OPEN, overlapping])
    predicted = lab.plan()
    assert predicted == {
        OPEN.key: Effect.NEW_ATTEMPT,
        LATER.key: Effect.NEW_ATTEMPT,
        third.key: Effect.NEW_ATTEMPT,
        overlapping.key: Effect.UNDEFINED,  # inside the completed third attempt only
    }
    assert lab.apply().exit_code == 3
    assert lab.attempts()[OPEN.pair] == [OPEN.values(), LATER.values(), third.values()]

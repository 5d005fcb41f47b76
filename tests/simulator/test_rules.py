"""The attempt rules (reference §7), table-driven."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncer.simulator.rules import Attempt, Statistic, apply_statistic, problem, target_attempt


def t(hour: int) -> datetime:
    return datetime(2025, 1, 1, hour, tzinfo=UTC)


def attempt(first: int, last: int, done: bool = False, name: str = "a") -> Attempt:
    return Attempt(name, t(first), t(last), t(last) if done else None, 100 if done else 50, 1000)


def statistic(first: int, last: int, force: bool = False, progress: float = 50) -> Statistic:
    return Statistic(t(first), t(last), progress, 1000, force_new=force)


@pytest.mark.parametrize(
    ("attempts", "stat", "expected"),
    [
        pytest.param((), statistic(1, 2), None, id="no-attempt-creates"),
        pytest.param((attempt(1, 3),), statistic(2, 4, force=True), None, id="force-new-creates"),
        pytest.param((attempt(1, 3),), statistic(4, 5), None, id="later-than-every-end-creates"),
        pytest.param((attempt(1, 3),), statistic(2, 5), 0, id="overlap-open-updates"),
        pytest.param((attempt(1, 3),), statistic(3, 5), 0, id="equal-end-counts-as-overlap"),
        pytest.param((attempt(1, 3, done=True),), statistic(2, 5), None, id="overlap-only-completed-creates"),
        pytest.param(
            (attempt(1, 3, name="a"), attempt(2, 6, name="b")), statistic(2, 7), 1, id="latest-open-wins"
        ),
        pytest.param(
            (attempt(1, 6, name="a"), attempt(2, 3, done=True, name="b")),
            statistic(2, 7),
            0,
            id="skips-completed-latest",
        ),
        pytest.param((attempt(5, 6),), statistic(1, 2), 0, id="earlier-stat-updates-open"),
    ],
)
def test_target_attempt(attempts: tuple[Attempt, ...], stat: Statistic, expected: int | None) -> None:
    assert target_attempt(attempts, stat) == expected


def test_progress_100_completes_at_last_activity() -> None:
    attempts, touched = apply_statistic((), statistic(1, 2, progress=100), "x")
    assert touched.completed_at == t(2)
    assert attempts == (touched,)


def test_update_keeps_earliest_first_activity_and_overwrites_progress() -> None:
    attempts, touched = apply_statistic((attempt(2, 4),), statistic(3, 6, progress=20), "new")
    assert (touched.attempt_id, touched.first_activity_at, touched.last_activity_at) == ("a", t(2), t(6))
    assert touched.progress == 20 and touched.completed_at is None
    assert len(attempts) == 1


def test_item_schema_problems_name_the_field() -> None:
    message = problem("bulk", "ImportExternalStatisticsDTO", {"progress": 150})
    assert message is not None
    item = {
        "courseIdentifier": {"type": "externalId", "value": "c"},
        "userIdentifier": {"type": "mail", "value": "a@b.c"},
        "progress": 150,
        "timeSpent": 1,
        "firstActivityAt": "2025-01-01T00:00:00Z",
        "lastActivityAt": "2025-01-01T00:00:00Z",
    }
    assert (
        problem("bulk", "ImportExternalStatisticsDTO", item)
        == "progress: 150 is greater than the maximum of 100"
    )
    assert "unexpected" in str(
        problem("bulk", "ImportExternalStatisticsDTO", {**item, "progress": 1, "x": 1})
    )
    bad_time = {**item, "progress": 1, "firstActivityAt": "yesterday"}
    assert str(problem("bulk", "ImportExternalStatisticsDTO", bad_time)).startswith("firstActivityAt")

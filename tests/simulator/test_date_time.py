"""RFC 3339 date-times are checked for real: these fail when jsonschema's date-time check is off.

jsonschema checks ``format: date-time`` only when its optional checker package (rfc3339-validator)
is installed; without it every string passes, and the simulator and the referee accept dates the
platform refuses. pyproject.toml declares the package; these tests fail if it goes missing.
"""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from syncer.mapping import load_api_validator
from syncer.models import RecordKind
from syncer.simulator.rules import problem
from tests.openapi.referee import component
from tests.simulator.conftest import Api, course, stat

NOT_RFC3339 = [
    pytest.param("2025-01-01 10:00:00Z", id="space-separator"),
    pytest.param("2025-01-01T10:00:00+0200", id="offset-without-colon"),
    pytest.param("2025-01-01T10:00:00", id="no-offset"),
    pytest.param("20250101T100000Z", id="basic-format"),
]


def test_jsonschema_checks_date_time() -> None:
    checker = Draft202012Validator.FORMAT_CHECKER
    assert not checker.conforms("2025-01-01 10:00:00Z", "date-time"), (
        "jsonschema's date-time check is not active: is rfc3339-validator installed?"
    )
    assert checker.conforms("2025-01-01T10:00:00.000Z", "date-time")


@pytest.mark.parametrize("when", NOT_RFC3339)
def test_every_checker_refuses_a_statistic_with_a_non_rfc3339_date(when: str) -> None:
    item = stat("c1", "ann@acme.example", when, "2025-01-02T10:00:00.000Z")
    # The simulator's item check, the official schema (the referee) and our compiled checker.
    assert str(problem("bulk", "ImportExternalStatisticsDTO", item)).startswith("firstActivityAt:")
    assert not component("bulk", "ImportExternalStatisticsDTO").is_valid(item)
    assert load_api_validator(RecordKind.STAT).check(item) == (
        "firstActivityAt",
        f"{when!r} is not a 'date-time'",
    )


async def test_simulator_refuses_a_statistic_with_a_space_in_its_date(api: Api) -> None:
    await api.finish(await api.submit("PUT", "courses", [course("c1")]))
    good = stat("c1", "ann@acme.example", "2025-01-01T10:00:00.000Z", "2025-01-01T11:00:00.000Z")
    bad = stat("c1", "bob@acme.example", "2025-01-01 10:00:00Z", "2025-01-01T11:00:00.000Z")
    results = await api.finish(await api.submit("POST", "stats", [good, bad]))
    assert [r["status"] for r in results] == ["success", "error"]
    # UNDOCUMENTED (simulator's choice, docs/simulator.md): an item that violates the schema is
    # refused as an item error of the operation, not as a 400 for the whole call.
    assert results[1]["errorMessage"].startswith("Invalid statistic: firstActivityAt:")
    assert "date-time" in results[1]["errorMessage"]
    pairs = api.sim.state.snapshot()["attempts"]
    assert [len(pair["attempts"]) for pair in pairs] == [1], pairs

"""The attempt prediction on a PostgreSQL ledger: the same effects, held and sent the same way."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.attempts.conftest import Lab, _reset_syncer_logger, make_lab, sim_settings
from tests.e2e.attempts.test_effects import CASES, check_case

__all__ = ["_reset_syncer_logger", "make_lab", "sim_settings"]  # fixtures used here

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize(
    "name",
    [
        "update-open-attempt",
        "duplicate-completed-attempt-edited",
        "duplicate-force-new-row-edited",
        "overwrites-older-edited-while-newer-open",
        "undefined-starts-when-open-attempt-ends",
    ],
)
def test_effects_on_postgresql(make_lab: Callable[..., Lab], pg_url: str, name: str) -> None:
    lab = make_lab()
    lab.ledger = pg_url
    check_case(lab, CASES[name])

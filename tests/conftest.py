"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.sim_fixture"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own credentials."""
    for name in list(os.environ):
        if name.startswith(("L360_", "SYNCER_TEST_")):
            monkeypatch.delenv(name, raising=False)

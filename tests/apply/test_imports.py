"""The production apply path never loads the simulator: only ``apply --simulate`` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def loads_simulator(module: str) -> bool:
    """Whether importing ``module`` in a fresh interpreter brings ``syncer.simulator`` in."""
    code = f"import sys, {module}; print('syncer.simulator' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip() == "True"


@pytest.mark.parametrize(
    "module", ["syncer.apply", "syncer.apply.run", "syncer.plan", "syncer.ledger", "syncer.api"]
)
def test_importing_apply_leaves_the_simulator_out(module: str) -> None:
    assert not loads_simulator(module)


def test_the_sandbox_alone_brings_the_simulator_in() -> None:
    assert loads_simulator("syncer.apply.sandbox")  # the check above can fail

"""The production apply path never loads the simulator: only ``apply --simulate`` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def loads_simulator(module: str) -> bool:
    """Whether importing ``module`` in a fresh interpreter brings ``syncer.simulator`` in."""
    code = f"import sys, {module}; print('syncer.simulator' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip() == "True"


def test_importing_apply_leaves_the_simulator_out() -> None:
    assert not loads_simulator("syncer.apply")
    assert not loads_simulator("syncer.apply.run")


def test_the_sandbox_alone_brings_the_simulator_in() -> None:
    assert loads_simulator("syncer.apply.sandbox")  # the check above can fail

"""Stage 7, apply: sends a plan through the API, follows every operation, records the outcome."""

from __future__ import annotations

from syncer.apply.run import (
    ApplyOptions as ApplyOptions,
)
from syncer.apply.run import (
    IntegrationOutcome as IntegrationOutcome,
)
from syncer.apply.run import (
    RunReport as RunReport,
)
from syncer.apply.run import (
    apply_config as apply_config,
)
from syncer.apply.run import (
    run_apply as run_apply,
)
from syncer.apply.run import (
    simulated as simulated,
)

__all__ = [
    "ApplyOptions",
    "IntegrationOutcome",
    "RunReport",
    "apply_config",
    "run_apply",
    "simulated",
]

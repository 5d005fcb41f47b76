"""syncer: keep a 360Learning platform in step with an external learning platform.

The library under the ``syncer`` command: load a config, plan against the ledger, apply.

    config = load_config(Path("syncer.yaml"))
    ledger = Ledger.open(config.ledger_url.reveal())
    with build_plan(config, ledger) as plan:
        print(render_plan(plan, "text"))
    report = run_apply(config, ledger, ApplyOptions())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncer.apply import ApplyOptions, RunReport, apply_config, run_apply
    from syncer.config import Config, load_config
    from syncer.errors import (
        ApiError,
        ApiUnavailable,
        BulkJobError,
        ConfigError,
        GuardError,
        InterruptedRunError,
        LedgerError,
        LedgerUnusableError,
        LockedError,
        PlanError,
        SourceError,
        SubmissionLost,
        SyncerError,
    )
    from syncer.ledger import Ledger
    from syncer.ledger.lock import acquire_lock
    from syncer.plan import Plan, build_plan
    from syncer.report import render_plan

from syncer.version import __version__ as __version__

__all__ = [
    "ApiError",
    "ApiUnavailable",
    "ApplyOptions",
    "BulkJobError",
    "Config",
    "ConfigError",
    "GuardError",
    "InterruptedRunError",
    "Ledger",
    "LedgerError",
    "LedgerUnusableError",
    "LockedError",
    "Plan",
    "PlanError",
    "RunReport",
    "SourceError",
    "SubmissionLost",
    "SyncerError",
    "__version__",
    "acquire_lock",
    "apply_config",
    "build_plan",
    "load_config",
    "render_plan",
    "run_apply",
]

# Imported on first use: `syncer plan` need not load the HTTP client, `syncer validate` neither
# the ledger (a quarter of a second of imports each).
_HOMES = {
    "Config": "config",
    "load_config": "config",
    "ApplyOptions": "apply",
    "RunReport": "apply",
    "apply_config": "apply",
    "run_apply": "apply",
    "Ledger": "ledger",
    "acquire_lock": "ledger.lock",
    "Plan": "plan",
    "build_plan": "plan",
    "render_plan": "report",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"syncer.{_HOMES[name]}"), name)
    if name in __all__:
        return getattr(importlib.import_module("syncer.errors"), name)
    raise AttributeError(f"module 'syncer' has no attribute {name!r}")

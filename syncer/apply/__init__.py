"""Stage 7, apply: sends a plan through the API, follows every operation, records the outcome.

Modules, each with one job:

- ``run``: one apply run, start to end (``run_apply``, ``apply_config``, ``ApplyOptions``);
- ``executor``: the pipelined ``Executor`` that writes batches ahead, sends and follows them;
- ``integrations``: the platform side of each integration (checked, found or created);
- ``outcome``: what a run did (``RunReport``, ``IntegrationOutcome``);
- ``sandbox``: ``apply --simulate`` (in-process simulator, throw-away ledger copy). Imported
  by the CLI only, never from here: the production apply path does not load the simulator.

Who writes the ledger during an apply, every write through a ``Ledger`` method or the plan:
``run_apply`` (the run row: ``start_run``, ``finish_run``); ``build_plan`` (the latest plan's
invalid rows and held statistics) and ``Plan.remember_digests`` (digests of unchanged records),
both called by ``apply_config``; ``resolve_integration`` (``set_integration_id``); the
``Executor``'s one ledger thread (``prepare_operation``, ``mark_submitted``, ``record_results``,
``abandon_operation``; once that thread has stopped, ``Executor.cancel`` abandons the batches
never sent); and the run lock's heartbeat (``syncer.ledger.lock``), passed in by the caller.
"""

from __future__ import annotations

from syncer.apply.outcome import (
    IntegrationOutcome as IntegrationOutcome,
)
from syncer.apply.outcome import (
    RunReport as RunReport,
)
from syncer.apply.run import (
    ApplyOptions as ApplyOptions,
)
from syncer.apply.run import (
    apply_config as apply_config,
)
from syncer.apply.run import (
    run_apply as run_apply,
)

__all__ = [
    "ApplyOptions",
    "IntegrationOutcome",
    "RunReport",
    "apply_config",
    "run_apply",
]

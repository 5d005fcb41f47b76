"""Stage 5, the plan: desired records vs the ledger, computed in the ledger database; saved plans."""

from __future__ import annotations

from syncer.plan.attempts import (
    MAX_ROUNDS as MAX_ROUNDS,
)
from syncer.plan.attempts import (
    Prediction as Prediction,
)
from syncer.plan.attempts import (
    predict as predict,
)
from syncer.plan.build import (
    build_plan as build_plan,
)
from syncer.plan.build import (
    plan_records as plan_records,
)
from syncer.plan.build import (
    select_integrations as select_integrations,
)
from syncer.plan.plan import (
    Blocker as Blocker,
)
from syncer.plan.plan import (
    BlockReason as BlockReason,
)
from syncer.plan.plan import (
    Plan as Plan,
)
from syncer.plan.saved import (
    SavedPlan as SavedPlan,
)
from syncer.plan.saved import (
    check_saved_plan as check_saved_plan,
)
from syncer.plan.saved import (
    fingerprint_source as fingerprint_source,
)
from syncer.plan.saved import (
    load_saved_plan as load_saved_plan,
)
from syncer.plan.saved import (
    save_plan as save_plan,
)
from syncer.plan.stage import (
    Desired as Desired,
)
from syncer.plan.streams import (
    PARALLEL_MIN_BYTES as PARALLEL_MIN_BYTES,
)
from syncer.plan.streams import (
    PARALLEL_MIN_ROWS as PARALLEL_MIN_ROWS,
)
from syncer.plan.streams import (
    FileStream as FileStream,
)
from syncer.plan.streams import (
    Run as Run,
)
from syncer.plan.streams import (
    Selection as Selection,
)
from syncer.plan.streams import (
    stage_runs as stage_runs,
)
from syncer.plan.streams import (
    stage_source as stage_source,
)
from syncer.plan.summary import (
    DETAIL_LIMIT as DETAIL_LIMIT,
)

__all__ = [
    "DETAIL_LIMIT",
    "MAX_ROUNDS",
    "PARALLEL_MIN_BYTES",
    "PARALLEL_MIN_ROWS",
    "BlockReason",
    "Blocker",
    "Desired",
    "FileStream",
    "Plan",
    "Prediction",
    "Run",
    "SavedPlan",
    "Selection",
    "build_plan",
    "check_saved_plan",
    "fingerprint_source",
    "load_saved_plan",
    "plan_records",
    "predict",
    "save_plan",
    "select_integrations",
    "stage_runs",
    "stage_source",
]

"""Stage 8, the report: plans, runs, status and rejected records as text, markdown and JSON.

Modules, each with one job: ``plan`` (the plan as text, markdown or JSON), ``run`` (the
end-of-apply summary), ``ledger`` (``syncer status`` and ``syncer rejected``), and ``pieces``
(the one-line texts they share), ``refresh`` (what ``syncer refresh`` read back). Layout only:
no decision is taken here. What an apply tells at its end: ``runend`` (how it ended, its
outcomes), ``notify`` (the ``notify:`` webhooks), ``metrics`` (the Prometheus textfile) and
``watch`` (``RunWatch``, which the CLI feeds and finishes); imported by path, by the CLI only.
"""

from __future__ import annotations

from syncer.report.ledger import (
    render_rejected as render_rejected,
)
from syncer.report.ledger import (
    render_status as render_status,
)
from syncer.report.ledger import (
    status_data as status_data,
)
from syncer.report.plan import (
    FORMATS as FORMATS,
)
from syncer.report.plan import (
    MARKDOWN_LIMIT as MARKDOWN_LIMIT,
)
from syncer.report.plan import (
    plan_data as plan_data,
)
from syncer.report.plan import (
    render_json as render_json,
)
from syncer.report.plan import (
    render_markdown as render_markdown,
)
from syncer.report.plan import (
    render_plan as render_plan,
)
from syncer.report.plan import (
    render_text as render_text,
)
from syncer.report.refresh import (
    render_refresh as render_refresh,
)
from syncer.report.run import (
    render_run as render_run,
)

__all__ = [
    "FORMATS",
    "MARKDOWN_LIMIT",
    "plan_data",
    "render_json",
    "render_markdown",
    "render_plan",
    "render_refresh",
    "render_rejected",
    "render_run",
    "render_status",
    "render_text",
    "status_data",
]

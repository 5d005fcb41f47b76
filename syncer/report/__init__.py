"""Stage 8, the report: plans, runs, status and rejected records as text, markdown and JSON."""

from __future__ import annotations

from syncer.report.render import (
    FORMATS as FORMATS,
)
from syncer.report.render import (
    MARKDOWN_LIMIT as MARKDOWN_LIMIT,
)
from syncer.report.render import (
    plan_data as plan_data,
)
from syncer.report.render import (
    render_json as render_json,
)
from syncer.report.render import (
    render_markdown as render_markdown,
)
from syncer.report.render import (
    render_plan as render_plan,
)
from syncer.report.render import (
    render_rejected as render_rejected,
)
from syncer.report.render import (
    render_run as render_run,
)
from syncer.report.render import (
    render_status as render_status,
)
from syncer.report.render import (
    render_text as render_text,
)
from syncer.report.render import (
    status_data as status_data,
)

__all__ = [
    "FORMATS",
    "MARKDOWN_LIMIT",
    "plan_data",
    "render_json",
    "render_markdown",
    "render_plan",
    "render_rejected",
    "render_run",
    "render_status",
    "render_text",
    "status_data",
]

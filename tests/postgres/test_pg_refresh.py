"""Reading the platform back with a PostgreSQL ledger: the same adoption, identity and drift."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, text

from tests.e2e.apply.conftest import attempts_per_pair, live_courses, submissions
from tests.e2e.refresh.conftest import (
    Project,
    _reset_syncer_logger,
    by_hand,
    make_project,
    make_sim,
    project,
    sim_settings,
)

__all__ = ["_reset_syncer_logger", "make_project", "make_sim", "project", "sim_settings"]  # fixtures

pytestmark = pytest.mark.postgres


def _on_postgres(project: Project, url: str) -> None:
    text_ = project.config.read_text()
    assert "sqlite:///syncer.db" in text_
    project.config.write_text(text_.replace("sqlite:///syncer.db", url))


def _synced(admin: Engine, schema: str) -> list[tuple[object, ...]]:
    with admin.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    f'SELECT integration, kind, key, hash, live FROM "{schema}".records '
                    "WHERE status = 'synced' ORDER BY kind, key"
                )
            )
        ]


def test_a_lost_postgresql_ledger_is_rebuilt_without_sending(
    project: Project, pg_url: str, pg_schema: str, pg_admin: Engine
) -> None:
    _on_postgres(project, pg_url)
    assert project.apply().exit_code == 0
    sent, pairs, synced = (
        submissions(project.sim),
        attempts_per_pair(project.sim),
        _synced(pg_admin, pg_schema),
    )
    with pg_admin.connect() as conn:  # the ledger is lost: an empty schema
        conn.execute(text(f'DROP SCHEMA "{pg_schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{pg_schema}"'))

    result = project.apply()

    assert result.exit_code == 0, result.output
    # Counted right on PostgreSQL too (an INSERT ... SELECT's rowcount is -1 unless preserved).
    adopted = re.search(r"([\d,]+) statistics adopted", result.stderr)
    assert adopted is not None, result.stderr
    assert int(adopted.group(1).replace(",", "")) == sum(1 for row in synced if row[1] == "stat") > 0
    assert submissions(project.sim) == sent
    assert attempts_per_pair(project.sim) == pairs
    assert _synced(pg_admin, pg_schema) == synced
    assert project.cli("plan", str(project.config), "--detailed-exitcode").exit_code == 0


def test_drift_and_a_renamed_key_on_postgresql(project: Project, pg_url: str) -> None:
    _on_postgres(project, pg_url)
    assert project.apply().exit_code == 0
    sent = len(submissions(project.sim))
    course = next(c for c in project.sim.snapshot()["courses"] if c["externalId"] == "C004")
    by_hand(project.sim, "PUT", f"/api/v2/courses/{course['courseId']}/archive", {"archived": True})
    project.config.write_text(project.config.read_text().replace("\n  acme:\n", "\n  academy:\n"))

    refresh = project.cli("refresh", str(project.config))
    result = project.apply()

    assert refresh.exit_code == 0, refresh.output
    assert "renamed from acme" in refresh.stdout
    assert "course C004: archived on the platform" in refresh.stdout
    assert result.exit_code == 0, result.output
    assert "C004" in live_courses(project.sim)
    assert len(submissions(project.sim)) == sent + 1  # only the course import that restores C004

"""Bursts of 429 (both shapes), 503 and 500, a token revoked mid-run, an operation in ``error``."""

from __future__ import annotations

from collections import Counter

from tests.e2e.apply.conftest import Project, attempts_per_pair, live_courses, operations, submissions

OPERATION = r"/api/v2/bulk/operations/[0-9a-f]{24}$"


def test_fault_bursts_and_a_token_expiring_mid_run_are_survived(project: Project) -> None:
    # One rule per kind of request: every rule that matches a request is consumed by it.
    project.sim.add_faults(
        [
            {"method": "PUT", "path_regex": "/courses$", "status": 429, "shape": "structured", "count": 2},
            {"method": "POST", "path_regex": "/stats$", "status": 503, "count": 2},
            {"method": "GET", "path_regex": OPERATION, "status": 500, "count": 2},
            {"method": "GET", "path": "/api/v2/integrations", "status": 429, "shape": "flat"},
            {"method": "GET", "path_regex": "/results$", "expire_tokens": True},
        ]
    )
    result = project.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert project.sim.snapshot()["faults"] == []  # every fault was met
    statuses = Counter(e["status"] for e in project.sim.snapshot()["journal"])
    assert (statuses[429], statuses[503], statuses[500], statuses[401]) == (3, 2, 2, 1)
    tokens = [e for e in project.sim.snapshot()["journal"] if e["path"] == "/api/v2/oauth2/token"]
    assert len(tokens) == 2  # renewed once, mid-run, after the 401
    # Refused submissions created nothing: exactly one operation per batch.
    assert [op["type"] for op in operations(project.sim)] == [
        "importExternalCourses",
        "importExternalStatistics",
    ]
    assert len(live_courses(project.sim)) == 4
    assert set(attempts_per_pair(project.sim).values()) == {1}
    assert "synced 16 | rejected 0" in result.stdout


def test_operation_ending_in_error_leaves_records_unsynced_then_next_run_sends_them(project: Project) -> None:
    project.sim.add_faults(
        [{"method": "POST", "path_regex": "/stats$", "error_operation": True, "message": "Disk on fire"}]
    )
    failed = project.apply()
    assert failed.exit_code == 4, failed.stdout + failed.stderr
    assert "1 operation(s) ended in error" in failed.stdout
    assert "operation ended in error: Disk on fire" in failed.stdout
    assert attempts_per_pair(project.sim) == {}
    stats = project.ledger_rows("SELECT status, message FROM records WHERE kind = 'stat'")
    assert stats == [("pending", "Disk on fire")] * 12
    assert project.ledger_rows("SELECT status, error_message FROM operations ORDER BY id") == [
        ("completed", None),
        ("error", "Disk on fire"),
    ]

    sent = len(submissions(project.sim))
    again = project.apply()
    assert again.exit_code == 0, again.stdout + again.stderr
    assert len(submissions(project.sim)) == sent + 1  # the statistics only: courses are synced
    assert operations(project.sim)[-1]["items"] == 12
    assert len(attempts_per_pair(project.sim)) == 12


def test_results_in_another_order_are_paired_with_the_items_read_back_from_the_ledger(
    project: Project,
) -> None:
    # In flight, apply keeps a batch's items as hashes only (the ledger holds the texts). Results
    # that do not repeat the items in order (their order is undocumented) are paired with the
    # items read back from the ledger: each record gets its own result, none is missing.
    project.sim.add_faults(
        [{"method": "GET", "path_regex": "/results$", "reverse_results": True, "count": 2}]
    )
    result = project.apply()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert project.sim.snapshot()["faults"] == []  # both operations' results came reversed
    assert "synced 16 | rejected 0" in result.stdout
    assert project.ledger_rows("SELECT DISTINCT result_status FROM operation_items") == [("success",)]
    # Each item holds the platform's id of its own course: as the simulator's results say.
    ids = dict(
        project.ledger_rows("SELECT record_key, resource_id FROM operation_items WHERE kind = 'course'")
    )
    platform = {c["externalId"]: c["courseId"] for c in project.sim.snapshot()["courses"]}
    assert ids == platform

"""`syncer doctor CONFIG`: every check against the simulator over HTTP, with its fix and exit code."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from syncer.ledger import Ledger
from syncer.simulator import ALL_SCOPES, SimClient, SimulatorSettings, SimulatorThread
from tests.doctor.conftest import (
    CLIENT,
    ENV,
    SECRET,
    Doctor,
    closed_port,
    lines_of,
    run_without_dac_override,
    write_project,
)
from tests.project import ACME, AUTHOR, GROUP, courses_block, stats_block

FAST = {"op_seconds": 0.05, "write_rate": None, "read_rate": None}
OTHER = "64b7f0c2a1e4d5f6a7b8c9ff"
UID = os.geteuid()


def settings(scopes: frozenset[str] = ALL_SCOPES, **more: object) -> SimulatorSettings:
    """The simulator with the doctor's credential, granted ``scopes``."""
    client = SimClient(client_id=CLIENT, client_secret=SECRET, scopes=scopes)
    return SimulatorSettings(clients=(client,), **FAST, **more)  # type: ignore[arg-type]


def with_settings(value: SimulatorSettings, id: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("sim_settings", [value], ids=[id])


@with_settings(settings(), "all-scopes")
@pytest.mark.parametrize("existing_ledger", [False, True], ids=["new-ledger", "ledger-at-head"])
def test_all_good_is_every_check_passed(
    doctor: Doctor, sim_thread: SimulatorThread, tmp_path: Path, existing_ledger: bool
) -> None:
    config = write_project(tmp_path, sim_thread.base_url)
    if existing_ledger:
        Ledger.open(f"sqlite:///{tmp_path / 'syncer.db'}").close()
    code, out = doctor(str(config))
    assert code == 0, out
    lines = lines_of(out)
    assert all(line.startswith("✓ ") for line in lines), out
    assert out.splitlines()[-1] == "all checks passed"
    host = sim_thread.base_url.removeprefix("http://")
    for expected in (
        f"✓ config: {config} is valid (1 integration, 2 sources)",
        "✓ source of acme courses: catalog: the first 2 rows map",
        "✓ source of acme stats: progress: its one row maps",
        f"✓ API host: {host} answers at {sim_thread.base_url}",
        f"✓ credentials: client_id {CLIENT} accepted (token issued)",
        f"✓ integration acme: group: group {GROUP} exists",
        f"✓ integration acme: author: author {AUTHOR} exists",
        f"✓ integration acme: no 'Acme Academy' in group {GROUP} yet: the next apply creates it",
        "✓ limits: concurrent_operations 3, requests_per_second 10, reads_per_second 50; "
        "0 bulk operations unfinished on the platform now",
    ):
        assert expected in lines, out
    scopes = [line.split(":", 2)[0] + ":" + line.split(":", 2)[1] for line in lines if " scope " in line]
    assert scopes == [
        f"✓ scope {name}"
        for name in (
            "integrations:read",
            "integrations:write",
            "integrations:bulk",
            "bulkOperations:read",
            "courses:read",
            "courseStats:read",
            "users:read",
        )
    ]
    if existing_ledger:
        assert any(line.startswith("✓ ledger: ") and "schema at the head" in line for line in lines), out
        assert any(line.startswith("✓ ledger writable: ") for line in lines), out
    else:
        assert f"✓ ledger: {tmp_path / 'syncer.db'} does not exist yet: the next run creates it" in out
        assert not (tmp_path / "syncer.db").exists()
    # Nothing was written to the platform.
    assert sim_thread.snapshot()["integrations"] == []
    assert sim_thread.snapshot()["operations"] == []


@with_settings(settings(), "all-scopes")
def test_an_integration_of_the_same_platform_in_the_group_will_be_adopted(
    doctor: Doctor, sim_thread: SimulatorThread, tmp_path: Path
) -> None:
    found = sim_thread.state.add_integration(externalPlatform="Acme Academy", groupId=GROUP, authorId=AUTHOR)
    by_id = {"id": found["_id"], "stats": stats_block()}
    gone = {"id": OTHER, "stats": stats_block()}
    config = write_project(
        tmp_path,
        sim_thread.base_url,
        {"acme": {**ACME, "courses": courses_block()}, "by-id": by_id, "gone": gone},
    )
    code, out = doctor(str(config))
    assert code == 1
    assert (
        f"✓ integration acme: 'Acme Academy' exists in group {GROUP} ({found['_id']}): it will be adopted"
        in out
    )
    assert f"✓ integration by-id: found by id {found['_id']} (Acme Academy in group {GROUP})" in out
    assert (
        f"✗ integration gone: no integration {OTHER} on the platform\n"
        f"    fix: fix gone's id: in {config}; if it was deleted on the platform, remove the id and give "
        "platform, group and author so that the next apply creates it again\n"
    ) in out
    code, out = doctor(str(config), "--integration", "by-id")
    assert code == 0, out
    assert "integration acme" not in out and "integration gone" not in out


@with_settings(settings(), "all-scopes")
def test_wrong_secret_names_the_variables_never_the_secret(
    doctor: Doctor, sim_thread: SimulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_project(tmp_path, sim_thread.base_url)
    monkeypatch.setenv("DOCTOR_CLIENT_SECRET", "not-the-secret")
    code, out = doctor(str(config))
    assert code == 1
    assert (
        f"✗ credentials: the platform refused client_id {CLIENT} and its secret (401 invalid_client)\n"
        "    fix: check client_id/client_secret (the variables named in the config: DOCTOR_CLIENT_ID, "
        "DOCTOR_CLIENT_SECRET): they must be an API v2 credential of this platform\n"
        "         the credential may also have been revoked in the platform's API settings\n"
        "- scopes: skipped (credentials refused)\n"
        "- integrations: skipped (credentials refused)\n"
    ) in out
    assert "not-the-secret" not in out
    assert out.splitlines()[-1] == "1 check failed: fix it and run syncer doctor again"


@with_settings(settings(ALL_SCOPES - {"integrations:bulk"}), "without-bulk")
def test_missing_scope_says_what_it_is_for_and_how_to_get_it(
    doctor: Doctor, sim_thread: SimulatorThread, tmp_path: Path
) -> None:
    config = write_project(tmp_path, sim_thread.base_url)
    code, out = doctor(str(config))
    assert code == 1
    assert (
        "✗ scope integrations:bulk: missing (403 invalid_scope), "
        "needed to send courses and statistics (apply)\n"
        "    fix: grant integrations:bulk to the API credential in the platform's API v2 settings (a "
        "restricted scope: 360Learning grants it through your Customer Success Partner)\n"
        "         syncer fetches a new token on each run\n"
    ) in out
    assert "✓ scope integrations:write: granted, to create and edit integrations (apply)" in out
    failed = [line for line in lines_of(out) if line.startswith("✗")]
    assert len(failed) == 1 and failed[0].startswith("✗ scope integrations:bulk: "), out


@with_settings(settings(frozenset({"integrations:read"})), "read-only")
def test_missing_read_scopes_of_refresh_fail_and_unchecked_lookups_warn(
    doctor: Doctor, sim_thread: SimulatorThread, tmp_path: Path
) -> None:
    config = write_project(tmp_path, sim_thread.base_url)
    code, out = doctor(str(config))
    assert code == 1
    for scope, purpose in (
        ("courses:read", "read the courses back (refresh, and apply when it reads an integration back)"),
        ("courseStats:read", "read the attempts back (refresh, and apply when it reads an integration back)"),
        ("users:read", "list the learners (refresh --users, refresh.users)"),
        ("bulkOperations:read", "follow the bulk operations to their end and read their results (apply)"),
    ):
        assert f"✗ scope {scope}: missing (403 invalid_scope), needed to {purpose}\n" in out
    assert "⚠ integration acme: group: cannot check: needs scope groups:read\n" in out
    assert "⚠ integration acme: author: cannot check: needs scope users:read\n" in out
    assert "unfinished bulk operations not read (needs scope bulkOperations:read)" in out


@with_settings(settings(groups=frozenset({OTHER}), authors=frozenset({OTHER})), "modelled")
def test_unknown_group_and_author(doctor: Doctor, sim_thread: SimulatorThread, tmp_path: Path) -> None:
    config = write_project(tmp_path, sim_thread.base_url)
    code, out = doctor(str(config))
    assert code == 1
    assert (
        f"✗ integration acme: group: group {GROUP} not found on the platform (404 groupNotFound)\n"
        f"    fix: fix acme's group: in {config}: the id of the group whose catalog receives the courses\n"
        f"✗ integration acme: author: author {AUTHOR} not found on the platform (404 userNotFound)\n"
        f"    fix: fix acme's author: in {config}: the id of a user who edits or administers that group\n"
    ) in out
    sim_thread.state.declare(groups=[GROUP], authors=[AUTHOR])
    code, out = doctor(str(config))
    assert code == 0, out


def test_unreachable_host_fails_fast_and_skips_what_needs_it(doctor: Doctor, tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    config = write_project(tmp_path, base_url)
    started = time.monotonic()
    code, out = doctor(str(config))
    assert time.monotonic() - started < 2.0
    assert code == 1
    host = base_url.removeprefix("http://")
    assert f"✗ API host: {host} does not answer at {base_url}: " in out
    assert (
        "    fix: check api.base_url (or api.region) in the config, and that this machine reaches the host "
        "(DNS, proxy, firewall)\n"
        "- credentials: skipped (API host unreachable)\n"
        "- scopes: skipped (API host unreachable)\n"
        "- integrations: skipped (API host unreachable)\n"
        "✓ limits: concurrent_operations 3, requests_per_second 10, reads_per_second 50; "
        "unfinished bulk operations not read (API host unreachable)\n"
    ) in out


@with_settings(settings(), "all-scopes")
@pytest.mark.parametrize("existing_ledger", [False, True], ids=["new-ledger", "existing-ledger"])
def test_read_only_ledger_folder(sim_thread: SimulatorThread, tmp_path: Path, existing_ledger: bool) -> None:
    folder = tmp_path / "ledger"
    folder.mkdir()
    ledger = folder / "syncer.db"
    if existing_ledger:
        Ledger.open(f"sqlite:///{ledger}").close()
    config = write_project(tmp_path, sim_thread.base_url, ledger=ledger)
    folder.chmod(0o555)
    try:
        done = run_without_dac_override("doctor", str(config), env=ENV)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 1, done.stdout + done.stderr
    fix = (
        f"    fix: make {folder} writable by the user running syncer (uid {UID}): SQLite creates the "
        "ledger there and writes its -wal and -shm files beside it\n"
    )
    if existing_ledger:
        # A WAL ledger cannot be read without creating its -shm file beside it.
        assert (
            f"✗ ledger: {ledger} cannot be opened: its folder {folder} is not writable (Permission denied)\n"
            f"{fix}- ledger writable: skipped (the ledger cannot be opened)\n"
        ) in done.stdout
    else:
        assert (
            f"✗ ledger: {ledger} does not exist and cannot be created in {folder}: Permission denied\n{fix}"
        ) in done.stdout
    assert [line[0] for line in lines_of(done.stdout)].count("✗") == 1, done.stdout


def test_invalid_config_lists_its_problems_and_stops(doctor: Doctor, tmp_path: Path) -> None:
    config = tmp_path / "syncer.yaml"
    config.write_text("version: 1\napi: {}\n", "utf-8")
    code, out = doctor(str(config))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"✗ config: {config}: ")
    assert lines[1].startswith(f"    fix: {config}:")
    assert "- sources: skipped (the config is not valid)" in lines
    assert "- limits: skipped (the config is not valid)" in lines


def test_config_warnings_are_shown(doctor: Doctor, tmp_path: Path) -> None:
    config = write_project(tmp_path, f"http://127.0.0.1:{closed_port()}")
    config.write_text(config.read_text("utf-8").replace("${DOCTOR_CLIENT_SECRET}", SECRET), "utf-8")
    code, out = doctor(str(config))
    assert code == 1  # the host is unreachable
    warned = [line for line in out.splitlines() if line.startswith("⚠ config: ")]
    assert len(warned) == 1 and warned[0].startswith(f"⚠ config: {config}:"), out


def test_unknown_integration_name(doctor: Doctor, tmp_path: Path) -> None:
    config = write_project(tmp_path, "http://127.0.0.1:1")
    code, out = doctor(str(config), "--integration", "nope")
    assert code == 1
    assert out.startswith(
        "✗ config: no integration named nope\n"
        "    fix: use one of the config's integrations with --integration: acme\n"
    )


def test_invalid_rows_beyond_tolerance_are_shown_with_their_origin(doctor: Doctor, tmp_path: Path) -> None:
    config = write_project(tmp_path, f"http://127.0.0.1:{closed_port()}")
    (tmp_path / "courses.csv").write_text("course_id,title\nC1,Course 1\nC2,\n", "utf-8")
    code, out = doctor(str(config))
    assert code == 1
    assert (
        "✗ source of acme courses: catalog: 1 of the first 2 rows are invalid, beyond tolerate_invalid\n"
        "    fix: correct these rows, or tolerate some: tolerate_invalid in acme's courses\n"
        "         courses.csv:3: missing value in column 'title'\n"
    ) in out

"""A config directory (syncer.yaml and three integration files) validates, plans and applies like the
same config in one file: each against its own simulator and ledger, their plans and outcomes compared."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from syncer.simulator import SimulatorThread
from tests.e2e.apply.conftest import CLIENT_ID, POLL, SECRET
from tests.project import (
    ACME,
    AUTHOR,
    CSV_SOURCES,
    STAT_FIELDS,
    STAT_HEADER,
    TAGGED_COURSE_FIELDS,
    TAGGED_COURSE_HEADER,
    course_rows,
    run_cli,
    stat_rows,
    write_csv,
)

GROUP_2, GROUP_3 = "64b7f0c2a1e4d5f6a7b8c9e2", "64b7f0c2a1e4d5f6a7b8c9e3"

PARTS: dict[str, dict[str, Any]] = {
    "acme.yaml": {
        "integrations": {
            "acme": {
                **ACME,
                "courses": {"source": "catalog", "mapping": "catalog", "archive_missing": True},
                "stats": {"source": "progress", "mapping": "progress"},
            }
        }
    },
    "beta.yaml": {
        "integrations": {
            "beta": {
                "platform": "Beta Academy",
                "group": GROUP_2,
                "author": AUTHOR,
                "courses": {
                    "source": "catalog",
                    "mapping": "catalog",
                    "fields": {"launchUrl": {"template": "https://beta.example/{course_id}"}},
                },
            }
        }
    },
    "gamma.yaml": {
        "integrations": {
            "gamma": {
                "platform": "Gamma Academy",
                "group": GROUP_3,
                "author": AUTHOR,
                "courses": {
                    "source": "catalog",
                    "mapping": "catalog",
                    "filter": [{"column": "course_id", "not_equals": "C004"}],
                },
                "stats": {
                    "source": "progress",
                    "mapping": "progress",
                    "filter": [{"column": "course_id", "not_equals": "C004"}],
                    "fields": {"progress": {"column": "pct", "type": "integer"}},
                },
            }
        }
    },
}


def main_file(base_url: str) -> dict[str, Any]:
    """syncer.yaml: what the integrations share (the ledger: syncer.db beside it, by default)."""
    return {
        "version": 1,
        "api": {"base_url": base_url, "client_id": CLIENT_ID, "client_secret": "${L360_CLIENT_SECRET}"},
        "defaults": {"stats": {"tolerate_invalid": 1}},
        "sources": CSV_SOURCES,
        "mappings": {"catalog": {"fields": TAGGED_COURSE_FIELDS}, "progress": {"fields": STAT_FIELDS}},
    }


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def write_data(root: Path) -> None:
    root.mkdir()
    write_csv(root / "courses.csv", TAGGED_COURSE_HEADER, course_rows(4))
    rows = stat_rows(4, 3)
    rows.append(["C001", "learner09@acme.example", "50", "0", "2025-03-09T08:00:00Z", "2025-03-09T09:00:00Z"])
    write_csv(root / "stats.csv", STAT_HEADER, rows)  # the last row is invalid (timeSpent 0)


def as_directory(root: Path, base_url: str) -> Path:
    write_data(root)
    (root / "syncer.yaml").write_text(dump(main_file(base_url)), "utf-8")
    for name, part in PARTS.items():
        (root / name).write_text(dump(part), "utf-8")
    return root


def as_one_file(root: Path, base_url: str) -> Path:
    write_data(root)
    data = main_file(base_url)
    data["integrations"] = {k: v for part in PARTS.values() for k, v in part["integrations"].items()}
    (root / "syncer.yaml").write_text(dump(data), "utf-8")
    return root / "syncer.yaml"


def state(sim: SimulatorThread) -> dict[str, Any]:
    """What the platform holds, without its generated ids: courses and attempts per integration."""
    snapshot = sim.snapshot()
    platform = {i["_id"]: i["externalPlatform"] for i in snapshot["integrations"]}
    external = {c["courseId"]: c["externalId"] for c in snapshot["courses"]}
    return {
        "integrations": sorted((i["externalPlatform"], i["groupId"]) for i in snapshot["integrations"]),
        "courses": sorted(
            (platform[c["integrationId"]], c["externalId"], c["status"], c["course"]["launchUrl"])
            for c in snapshot["courses"]
        ),
        "attempts": sorted(
            (
                platform[a["integrationId"]],
                external[a["courseId"]],
                a["user"],
                [{k: v for k, v in t.items() if k != "_id"} for t in a["attempts"]],
            )
            for a in snapshot["attempts"]
        ),
    }


@pytest.fixture
def configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_sim: Callable[..., SimulatorThread]
) -> tuple[tuple[Path, SimulatorThread], tuple[Path, SimulatorThread]]:
    """The directory and the one file, each against its own simulator (and with its own ledger)."""
    monkeypatch.setenv("L360_CLIENT_SECRET", SECRET)
    sims = make_sim(), make_sim()
    return (
        (as_directory(tmp_path / "dir", sims[0].base_url), sims[0]),
        (as_one_file(tmp_path / "one", sims[1].base_url), sims[1]),
    )


def test_a_directory_validates_plans_and_applies_like_one_file(
    configs: tuple[tuple[Path, SimulatorThread], tuple[Path, SimulatorThread]],
) -> None:
    (directory, dir_sim), (one, one_sim) = configs
    outputs: list[str] = []

    def both(*args: str) -> list[Result]:
        """``syncer COMMAND CONFIG ARGS`` for the directory, then for the one file."""
        return [run_cli(outputs, args[0], str(path), *args[1:]) for path in (directory, one)]

    def shown(results: list[Result]) -> list[str]:
        """Their outputs, each config's path written CONFIG."""
        return [r.stdout.replace(str(p), "CONFIG") for r, p in zip(results, (directory, one), strict=True)]

    validated = both("validate")
    assert [(r.exit_code, r.stderr) for r in validated] == [(0, "")] * 2
    text = shown(validated)
    assert text[0] == text[1]
    assert text[0].startswith(
        "CONFIG: valid (3 integrations, 2 sources; the first 100 rows of each source mapped)\n"
    )
    assert "stats.csv:14  gamma stat  timeSpent: 0 is less than the minimum of 1" in text[0]

    planned = both("plan", "--format", "json")
    assert [r.exit_code for r in planned] == [0, 0]
    dir_plan, one_plan = (json.loads(r.stdout) for r in planned)
    assert dir_plan == one_plan
    assert [i["name"] for i in dir_plan["integrations"]] == ["acme", "beta", "gamma"]
    assert dir_plan["changes_total"] == 4 + 12 + 4 + 3 + 9 and dir_plan["invalid_total"] == 2
    text = shown(both("plan"))
    assert text[0] == text[1] and "stats.csv:14  gamma stat  timeSpent" in text[0]

    applied = both("apply", *POLL)
    assert [r.exit_code for r in applied] == [0, 0], [r.stdout + r.stderr for r in applied]
    assert shown(applied)[0] == shown(applied)[1]
    assert state(dir_sim) == state(one_sim)
    assert len(state(dir_sim)["courses"]) == 11 and len(state(dir_sim)["attempts"]) == 21
    assert (directory / "syncer.db").is_file() and (one.parent / "syncer.db").is_file()

    again = both("plan", "--format", "json", "--detailed-exitcode")
    assert [r.exit_code for r in again] == [0, 0]
    assert json.loads(again[0].stdout) == json.loads(again[1].stdout)
    assert SECRET not in "".join(outputs)


def test_a_saved_plan_of_a_directory_is_refused_once_any_of_its_files_changed(
    configs: tuple[tuple[Path, SimulatorThread], tuple[Path, SimulatorThread]],
) -> None:
    (directory, sim), _ = configs
    outputs: list[str] = []
    planfile = directory.parent / "plan.json"
    assert run_cli(outputs, "plan", str(directory), "--out", str(planfile)).exit_code == 0
    # beta moved into gamma.yaml: the same config, the plan still holds
    gamma = yaml.safe_load((directory / "gamma.yaml").read_text("utf-8"))
    gamma["integrations"].update(PARTS["beta.yaml"]["integrations"])
    (directory / "gamma.yaml").write_text(dump(gamma), "utf-8")
    (directory / "beta.yaml").unlink()
    # an edit in one part file: refused
    text = (directory / "gamma.yaml").read_text("utf-8")
    (directory / "gamma.yaml").write_text(text.replace("https://beta.example/", "https://beta.example/c/"))
    result = run_cli(outputs, "apply", str(directory), str(planfile), *POLL)
    assert result.exit_code == 1
    assert "the config changed since the plan was made" in result.stderr
    assert sim.snapshot()["operations"] == []
    (directory / "gamma.yaml").write_text(text)
    result = run_cli(outputs, "apply", str(directory), str(planfile), *POLL)
    assert result.exit_code == 0, result.stdout + result.stderr

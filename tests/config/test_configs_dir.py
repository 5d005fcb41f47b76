"""Every config in configs/ validates (files and directories), the demo data is reproducible, the
example shows every option, and the part files fit their own schema."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from syncer.cli import cli
from syncer.config import config_schema, load_config
from syncer.mapping import Mapper
from syncer.models import InvalidRow, Record, RecordKind
from syncer.resources import schema_path
from syncer.sources import load_rows

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted(
    p.parent for p in (ROOT / "configs").glob("*/syncer.yaml")
)
"""The config files of configs/, and its config directories (a folder with a syncer.yaml)."""


def test_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "example.yaml", "project"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_validates_through_the_cli(path: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{path}: valid (")


def test_demo_data_is_what_the_script_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = ROOT / "configs" / "demo" / "make_demo_data.py"
    spec = importlib.util.spec_from_file_location("make_demo_data", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.main()
    for name in ("courses.csv", "stats.csv"):
        assert (tmp_path / name).read_bytes() == (ROOT / "configs" / "demo" / name).read_bytes(), name


def test_demo_has_a_few_invalid_rows_within_tolerance() -> None:
    config = load_config(ROOT / "configs" / "demo.yaml", {})
    [acme] = config.integrations.values()
    assert acme.platform == "Acme Academy" and acme.id is None
    counts: dict[RecordKind, Counter[str]] = {}
    learners: set[str] = set()
    for kind, spec in ((RecordKind.COURSE, acme.courses), (RecordKind.STAT, acme.stats)):
        assert spec is not None
        mapper = Mapper(acme, kind, spec)
        counts[kind] = Counter()
        for row in load_rows(config.sources[spec.source]):
            result = mapper.map(row)
            counts[kind][type(result).__name__] += 1
            if isinstance(result, Record) and kind is RecordKind.STAT:
                learners.add(result.payload["userIdentifier"]["value"])
    assert counts[RecordKind.COURSE][Record.__name__] == 20
    assert counts[RecordKind.COURSE][InvalidRow.__name__] == 0
    stats = counts[RecordKind.STAT]
    assert sum(stats.values()) == 500 and len(learners) == 80
    assert 3 <= stats[InvalidRow.__name__] <= 6
    assert acme.stats is not None and acme.stats.tolerate_invalid.allows(stats[InvalidRow.__name__], 500)


def _options(node: Any, out: set[str]) -> set[str]:
    """Every property name of the schema except the API field names (targets) under `fields`."""
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            out.add(name)
            if name != "fields":
                _options(sub, out)
        for key, sub in node.items():
            if key != "properties":
                _options(sub, out)
    elif isinstance(node, list):
        for sub in node:
            _options(sub, out)
    return out


def test_example_shows_every_option() -> None:
    text = (ROOT / "configs" / "example.yaml").read_text("utf-8")
    missing = sorted(name for name in _options(config_schema(), set()) if f"{name}:" not in text)
    assert missing == []


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(name).read_text("utf-8"))
    return schema


def _part_validator() -> Draft202012Validator:
    """schemas/config-part.schema.json, whose $refs name config.schema.json beside it (as editors read it)."""
    main = Resource.from_contents(_schema("config.schema.json"))
    return Draft202012Validator(
        _schema("config-part.schema.json"), registry=Registry().with_resource("config.schema.json", main)
    )


def test_every_part_file_fits_the_part_schema_and_names_it() -> None:
    configs = [load_config(path, {}) for path in CONFIGS]
    parts = [file for config in configs for file in config.files[1:]]
    assert {p.parent.name for p in parts} >= {"project", "teams"}  # a directory's and include:'s
    validator = _part_validator()
    for part in parts:
        text = part.read_text("utf-8")
        assert [e.message for e in validator.iter_errors(yaml.safe_load(text))] == [], part
        relative = Path("../" * (len(part.relative_to(ROOT).parts) - 1)) / "schemas/config-part.schema.json"
        assert text.startswith(f"# yaml-language-server: $schema={relative.as_posix()}\n"), part
    for config in configs:  # and each main file names the main schema, relative to it
        relative = (
            Path("../" * (len(config.main_file.relative_to(ROOT).parts) - 1)) / "schemas/config.schema.json"
        )
        assert config.main_file.read_text("utf-8").startswith(f"# yaml-language-server: $schema={relative}\n")


@pytest.mark.parametrize(
    ("part", "wrong"),
    [
        pytest.param({"api": {"client_id": "x", "client_secret": "y"}}, "api", id="main-file-key"),
        pytest.param({"sources": {"a": {"csv": "a.csv", "sheet": 1}}}, "sheet", id="deep"),
        pytest.param({}, "{}", id="empty"),
    ],
)
def test_the_part_schema_refuses_what_a_part_file_cannot_hold(part: dict[str, Any], wrong: str) -> None:
    errors = list(_part_validator().iter_errors(part))
    assert errors and any(wrong in e.message or wrong in str(e.instance) for e in errors)


def test_the_main_schema_takes_a_directory_main_file_without_sources() -> None:
    main = load_config(ROOT / "configs" / "project", {}).main_file
    data = yaml.safe_load(main.read_text("utf-8"))
    del data["sources"]
    data["api"]["base_url"] = "http://127.0.0.1:8360"  # as written it is a ${VAR}, not yet a URL
    assert list(Draft202012Validator(config_schema()).iter_errors(data)) == []

"""Every config in configs/ validates, the demo data is reproducible, and the example shows every option."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncer.cli import cli
from syncer.config import config_schema, load_config
from syncer.mapping import Mapper
from syncer.models import InvalidRow, Record, RecordKind
from syncer.sources import load_rows

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "example.yaml"}


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

"""A config of several files: a directory (syncer.yaml and part files) or include: globs; each
problem located in the file that holds it; names unique across files; the digest of all files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from syncer.cli import cli
from syncer.config import Config, SourceKind, load_config
from syncer.errors import ConfigError
from syncer.sources.digest import _facts  # a config object without its positions (``where``)

OID = "507f1f77bcf86cd799439011"
OID2 = "507f1f77bcf86cd799439012"
ROOT = Path(__file__).resolve().parents[2]

MAIN = """\
version: 1
api:
  base_url: http://127.0.0.1:8360
  client_id: demo
  client_secret: ${L360_CLIENT_SECRET:-demo-secret}
sources:
  catalog: {csv: courses.csv}
"""
COURSE_FIELDS = """\
      fields:
        externalId: course_id
        name: title
        launchUrl: {template: "https://acme.example/{course_id}"}
        defaultLang: {value: en}
        sources: {value: [{name: Acme}]}
        subjects: {value: []}
"""
ACME = f"""\
integrations:
  acme:
    id: {OID}
    courses:
      source: catalog
{COURSE_FIELDS}"""
BETA = ACME.replace("acme:", "beta:").replace(OID, OID2)


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative name -> text) under ``root``; return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return root


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    """The problems of the config at ``path``, with the temporary folder written ``T/``."""
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    folder = str(path if path.is_dir() else path.parent)
    return [str(p).replace(folder + "/", "T/") for p in info.value.problems]


def load(path: Path, env: dict[str, str] | None = None) -> Config:
    return load_config(path, env or {})


# --- which files ---------------------------------------------------------------------------


def test_a_directory_is_its_main_file_and_its_part_files_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, {"syncer.yaml": MAIN, "b.yaml": BETA, "a.yaml": ACME})
    config = load(tmp_path)
    assert config.path == tmp_path and config.main_file == tmp_path / "syncer.yaml"
    assert config.files == (tmp_path / "syncer.yaml", tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert list(config.integrations) == ["acme", "beta"]
    assert config.integrations["beta"].where == f"{tmp_path}/b.yaml:2:3"
    assert config.sources["catalog"].where == f"{tmp_path}/syncer.yaml:7:3"
    assert config.ledger_url.reveal() == f"sqlite:///{tmp_path.resolve()}/syncer.db"
    assert config.warnings == ()


def test_subdirectories_hidden_files_and_other_files_are_not_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "syncer.yaml": MAIN,
            "acme.yaml": ACME,
            ".beta.yaml": "not: [yaml",  # an editor's file
            "sub/beta.yaml": BETA,
            "notes.txt": "hello",
            "old.yml": BETA,
        },
    )
    config = load(tmp_path)
    assert config.files == (tmp_path / "syncer.yaml", tmp_path / "acme.yaml")
    assert [str(w) for w in config.warnings] == [
        f"{tmp_path}/old.yml: not read: the part files of a config directory end in .yaml "
        "(rename it, or move it out of the directory)"
    ]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({}, "there is none", id="none"),
        pytest.param(
            {"syncer.yml": MAIN}, "there is none (found syncer.yml: rename it to syncer.yaml)", id="yml"
        ),
    ],
)
def test_a_directory_without_syncer_yaml(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    write(tmp_path, {"acme.yaml": ACME, **files})
    needs = "a config directory needs its main file syncer.yaml (version, api, ledger...)"
    assert problems(tmp_path) == [f"{tmp_path}: {needs}; {expected}"]


def test_include_globs_add_part_files_to_a_single_file_config(tmp_path: Path) -> None:
    main = MAIN.replace("sources:", "include: [teams/*.yaml, more/**/*.yaml, teams/acme.yaml]\nsources:")
    write(
        tmp_path,
        {
            "main.yaml": main,
            "teams/acme.yaml": ACME,
            "more/deep/beta.yaml": BETA,
            "unrelated.yaml": "not: [yaml",
        },
    )
    config = load(tmp_path / "main.yaml")
    # teams/acme.yaml, matched twice, is read once; a single-file config reads no other file
    assert config.files == (
        tmp_path / "main.yaml",
        tmp_path / "teams/acme.yaml",
        tmp_path / "more/deep/beta.yaml",
    )
    assert list(config.integrations) == ["acme", "beta"]


def test_include_in_a_directory_adds_to_its_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"syncer.yaml": MAIN + "include: [teams/*.yaml]\n", "acme.yaml": ACME, "teams/beta.yaml": BETA},
    )
    assert load(tmp_path).files == (
        tmp_path / "syncer.yaml",
        tmp_path / "acme.yaml",
        tmp_path / "teams/beta.yaml",
    )


def test_a_glob_that_matches_nothing_or_something_else_is_located_at_the_glob(tmp_path: Path) -> None:
    main = MAIN.replace("sources:", "include:\n  - teams/*.yaml\n  - docs/*\n  - nothing/*.yaml\nsources:")
    write(tmp_path, {"main.yaml": main, "teams/acme.yaml": ACME, "docs/README.md": "# hello"})
    assert problems(tmp_path / "main.yaml") == [
        "T/main.yaml:8:5: include[1]: 'docs/*' matches T/docs/README.md, which is not a .yaml "
        "file; narrow it (e.g. teams/*.yaml)",
        f"T/main.yaml:9:5: include[2]: 'nothing/*.yaml' matches no file (globs are relative to {tmp_path})",
    ]


# --- a part file's shape ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        pytest.param(
            "api: {client_id: x}\n" + ACME,
            "T/p.yaml:1:1: api: api belongs in the main file syncer.yaml: a part file declares only "
            "sources, integrations and mappings",
            id="main-key",
        ),
        pytest.param(
            "include: [x.yaml]\n" + ACME,
            "T/p.yaml:1:1: include: include belongs in the main file syncer.yaml: a part file declares "
            "only sources, integrations and mappings",
            id="include",
        ),
        pytest.param(
            "defaults: {stats: {force_new: true}}\n" + ACME,
            "T/p.yaml:1:1: defaults: defaults belongs in the main file syncer.yaml: a part file declares "
            "only sources, integrations and mappings",
            id="defaults",
        ),
        pytest.param(
            ACME.replace("integrations:", "integration:"),
            "T/p.yaml:1:1: integration: unknown key 'integration' in a part file; "
            "did you mean 'integrations'?",
            id="unknown",
        ),
        pytest.param(
            "",
            "T/p.yaml:1:1: the file is empty: a part file declares sources:, integrations: or "
            "mappings: (delete it if it has nothing to declare)",
            id="empty",
        ),
        pytest.param(
            "- acme\n",
            "T/p.yaml:1:1: config: a part file is a mapping of sources:, integrations: and mappings:",
            id="a-list",
        ),
        pytest.param(
            "sources: [a, b]\n",
            "T/p.yaml:1:10: sources: must be a mapping of NAME: {...} (got a list)",
            id="list",
        ),
    ],
)
def test_a_part_file_holds_only_declarations(tmp_path: Path, part: str, expected: str) -> None:
    write(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": BETA, "p.yaml": part})
    assert problems(tmp_path) == [expected]


def test_x_keys_of_a_part_file_hold_its_anchors(tmp_path: Path) -> None:
    part = "x-rules: &rules\n  source: catalog\n" + ACME.replace(
        "      source: catalog\n", "      <<: *rules\n"
    )
    write(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": part})
    spec = load(tmp_path).integrations["acme"].courses
    assert spec is not None and spec.source == "catalog"


# --- names across files -----------------------------------------------------------------------


def test_a_name_declared_in_two_files_is_a_problem_in_both(tmp_path: Path) -> None:
    again = "sources:\n  catalog: {csv: other.csv}\n" + ACME
    write(tmp_path, {"syncer.yaml": MAIN, "a.yaml": ACME, "b.yaml": again})
    assert problems(tmp_path) == [
        "T/syncer.yaml:7:3: sources.catalog: declared again at T/b.yaml:2:3; a source's name is "
        "declared once across the config's files",
        "T/a.yaml:2:3: integrations.acme: declared again at T/b.yaml:4:3; an integration's name "
        "is declared once across the config's files",
        "T/b.yaml:2:3: sources.catalog: already declared at T/syncer.yaml:7:3; a source's name is "
        "declared once across the config's files",
        "T/b.yaml:4:3: integrations.acme: already declared at T/a.yaml:2:3; an integration's name "
        "is declared once across the config's files",
    ]


def test_the_same_name_in_two_kinds_is_no_problem(tmp_path: Path) -> None:
    write(tmp_path, {"syncer.yaml": MAIN, "a.yaml": ACME, "b.yaml": "sources:\n  acme: {csv: courses.csv}\n"})
    assert set(load(tmp_path).sources) == {"catalog", "acme"}


# --- every problem in its own file --------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "      source: catalog\n",
            "      source: catalog\n      archive: true\n",
            "T/acme.yaml:6:7: integrations.acme.courses.archive: unknown key 'archive'",
            id="schema",
        ),
        pytest.param(
            "source: catalog",
            "source: catalgo",
            "T/acme.yaml:5:15: integrations.acme.courses.source: unknown source 'catalgo'; "
            "did you mean 'catalog'?",
            id="unknown-source",
        ),
        pytest.param(
            "name: title",
            "name: ${TITLE_COLUMN}",
            "T/acme.yaml:8:15: integrations.acme.courses.fields.name: "
            "environment variable TITLE_COLUMN is not set",
            id="unset-variable",
        ),
        pytest.param(
            "name: title",
            "name: [title",
            "T/acme.yaml:9:18: invalid YAML: while parsing a flow sequence expected ',' or ']', but got ':'",
            id="yaml-syntax",
        ),
        pytest.param(
            "        name: title\n",
            "        name: title\n        name: again\n",
            "T/acme.yaml:9:9: integrations.acme.courses.fields.name: duplicate key",
            id="duplicate-key",
        ),
        pytest.param(
            f"id: {OID}",
            "id: 12345",
            "T/acme.yaml:3:9: integrations.acme.id: must be a 24-character hex ObjectId (got 12345)",
            id="id",
        ),
    ],
)
def test_a_mistake_in_a_part_file_is_reported_at_its_position(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in ACME
    write(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": ACME.replace(old, new), "beta.yaml": BETA})
    [problem] = problems(tmp_path)
    assert problem.startswith(expected), problem


def test_every_file_is_parsed_before_the_problems_are_reported(tmp_path: Path) -> None:
    main = MAIN.replace("client_id: demo", "client_id: ${NOPE}")
    write(tmp_path, {"syncer.yaml": main, "a.yaml": "integrations: [", "b.yaml": "sources: {x: ]"})
    lines = problems(tmp_path)
    assert [line.split(": ", 1)[0] for line in lines] == [
        "T/syncer.yaml:4:14",
        "T/a.yaml:1:16",
        "T/b.yaml:1:14",
    ]


def test_the_cli_reports_a_part_files_mistake_with_its_name_and_position(tmp_path: Path) -> None:
    write(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": ACME.replace("source: catalog", "source: 42")})
    for command in ("validate", "plan", "apply", "status", "rejected", "unlock", "refresh", "doctor"):
        result = CliRunner().invoke(cli, [command, str(tmp_path)])
        shown = result.stdout + result.stderr
        assert result.exit_code == 1, (command, shown)
        assert f"{tmp_path}/acme.yaml:5:15: integrations.acme.courses.source: must be a string" in shown, (
            command
        )
        assert "is a directory" not in shown


def test_other_commands_take_a_directory(tmp_path: Path) -> None:
    write(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": ACME, "courses.csv": "course_id,title\nC1,One\n"})
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith(f"{tmp_path}: valid (1 integration, 1 source; ")
    for command in ("status", "rejected", "unlock"):
        result = CliRunner().invoke(cli, [command, str(tmp_path)])
        assert result.exit_code == 0, (command, result.stdout + result.stderr)
    assert (tmp_path / "syncer.db").is_file()  # the ledger: syncer.db in the directory


def test_missing_sources_or_integrations_in_every_file(tmp_path: Path) -> None:
    write(tmp_path, {"syncer.yaml": MAIN, "a.yaml": "sources:\n  b: {csv: b.csv}\n"})
    assert problems(tmp_path) == [
        "T/syncer.yaml:1:1: config: missing required key 'integrations' (no file of the config declares any)"
    ]


# --- paths, digest ------------------------------------------------------------------------------


def test_a_sources_path_is_relative_to_the_file_that_declares_it(tmp_path: Path) -> None:
    part = "sources:\n  progress: {csv: data/stats.csv}\n  events: {jsonl: /abs/events.jsonl}\n"
    main = MAIN.replace("sources:", "include: [teams/*.yaml]\nledger: sqlite:///state/syncer.db\nsources:")
    write(tmp_path, {"syncer.yaml": main, "a.yaml": ACME, "teams/p.yaml": part})
    config = load(tmp_path)
    root = tmp_path.resolve()
    assert config.sources["catalog"].path == root / "courses.csv"
    assert config.sources["progress"].path == root / "teams/data/stats.csv"
    assert config.sources["progress"].kind is SourceKind.CSV
    assert config.sources["events"].path == Path("/abs/events.jsonl")
    assert config.ledger_url.reveal() == f"sqlite:///{root}/state/syncer.db"  # relative to the main file


def one_file(root: Path, files: dict[str, str]) -> str:
    """The YAML of the same config in one file: the part files' declarations merged into the main's."""
    data: dict[str, Any] = yaml.safe_load(files["syncer.yaml"])
    for name, text in files.items():
        if name != "syncer.yaml":
            for section, values in yaml.safe_load(text).items():
                data.setdefault(section, {}).update(values)
    return yaml.safe_dump(data, sort_keys=False)


def test_the_digest_covers_every_file_and_not_where_a_declaration_is(tmp_path: Path) -> None:
    files = {"syncer.yaml": MAIN, "a.yaml": ACME, "b.yaml": BETA}
    digest = load(write(tmp_path / "dir", files)).digest
    assert load(write(tmp_path / "one", {"c.yaml": one_file(tmp_path, files)}) / "c.yaml").digest == digest
    # beta moved into a.yaml: the same config
    moved = {"syncer.yaml": MAIN, "a.yaml": ACME + BETA.replace("integrations:\n", "")}
    assert load(write(tmp_path / "moved", moved)).digest == digest
    # one value changed in one part file: another config
    edited = {**files, "b.yaml": BETA.replace("name: title", "name: heading")}
    assert load(write(tmp_path / "edited", edited)).digest != digest


def test_the_secrets_of_a_part_file_stay_out_of_the_digest_and_are_warned_about(tmp_path: Path) -> None:
    part = "sources:\n  warehouse: {sql: {url: 'postgresql://u:hunter2@db/x', query: SELECT 1}}\n"
    config = load(write(tmp_path, {"syncer.yaml": MAIN, "a.yaml": ACME, "w.yaml": part}))
    [warning] = config.warnings
    assert str(warning).startswith(
        f"{tmp_path}/w.yaml:2:26: sources.warehouse.sql.url: the URL holds a password"
    )
    other = load(
        write(
            tmp_path / "other", {"syncer.yaml": MAIN, "a.yaml": ACME, "w.yaml": part.replace("hunter2", "x")}
        )
    )
    assert other.digest == config.digest


def test_the_configs_project_directory_is_the_same_config_as_in_one_file(tmp_path: Path) -> None:
    project = ROOT / "configs" / "project"
    files = {p.name: p.read_text("utf-8") for p in sorted(project.glob("*.yaml"))}
    shutil.copytree(ROOT / "configs" / "demo", tmp_path / "demo")
    write(tmp_path / "one", {"syncer.yaml": one_file(tmp_path, files)})
    single, directory = load(tmp_path / "one" / "syncer.yaml"), load(project)
    assert single.digest == directory.digest
    assert list(single.integrations) == list(directory.integrations)
    for name, integration in directory.integrations.items():
        assert _facts(integration) == _facts(single.integrations[name])
    assert {n: Path(str(s.path)).resolve() for n, s in single.sources.items()} == {
        n: tmp_path / Path(str(s.path)).resolve().relative_to(ROOT / "configs")
        for n, s in directory.sources.items()
    }


def test_a_part_file_wrong_as_a_whole_hides_no_problem_of_the_others(tmp_path: Path) -> None:
    wrong = ACME.replace("source: catalog", "source: catalgo")
    write(tmp_path, {"syncer.yaml": MAIN, "a.yaml": wrong, "b.yaml": "- not a mapping\n"})
    assert problems(tmp_path) == [
        "T/a.yaml:5:15: integrations.acme.courses.source: unknown source 'catalgo'; did you mean 'catalog'?",
        "T/b.yaml:1:1: config: a part file is a mapping of sources:, integrations: and mappings:",
    ]


def test_a_directorys_main_file_given_as_a_file_says_what_it_does_not_read(tmp_path: Path) -> None:
    """``syncer apply DIR/syncer.yaml`` reads that file alone: the warning names the files left out,
    also under the error that the missing integrations then cause."""
    write(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": ACME, "beta.yaml": BETA})
    result = CliRunner().invoke(cli, ["validate", "--no-sources", str(tmp_path / "syncer.yaml")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path}/syncer.yaml:1:1: config: missing required key 'integrations'",
        f"warning: {tmp_path}/syncer.yaml: given as a file, it reads no other file beside it "
        f"(acme.yaml, beta.yaml): to read a config directory, give the directory ({tmp_path}), "
        "or list them in include:",
    ]
    write(tmp_path, {"syncer.yaml": MAIN + "include: [acme.yaml]\n" + BETA})
    (tmp_path / "beta.yaml").unlink()
    config = load(tmp_path / "syncer.yaml")
    assert [str(w) for w in config.warnings] == []  # every .yaml beside it is read
    assert list(config.integrations) == ["beta", "acme"]
    assert load(tmp_path).warnings == ()  # the directory itself: nothing to say

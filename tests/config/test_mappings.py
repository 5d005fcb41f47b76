"""Reusable mappings (``mappings:`` and ``mapping: NAME``) and ``defaults:``: what an integration
gets from them, and problems reported where they are written, naming the use."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli import cli
from syncer.config import Config, FieldSpec, ObjectConfig, OnDrift, Tolerance, UnsafeChange, load_config
from syncer.errors import ConfigError

OID = "507f1f77bcf86cd799439011"

MAIN = """\
version: 1
api:
  base_url: http://127.0.0.1:8360
  client_id: demo
  client_secret: ${L360_CLIENT_SECRET:-demo-secret}
sources:
  catalog: {csv: courses.csv}
  progress: {csv: stats.csv}
mappings:
  lms:
    fields:
      course: {externalId: course_id}
      user: {mail: email}
      progress: {column: pct, scale: 100}
      score: {column: score, type: number}
      timeSpent: {column: seconds, unit: s}
      firstActivityAt: started
      lastActivityAt: finished
"""
ACME = f"""\
integrations:
  acme:
    id: {OID}
    stats:
      source: progress
      mapping: lms
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).write_text(text, "utf-8")
    return root


def load(root: Path, files: dict[str, str], env: dict[str, str] | None = None) -> Config:
    return load_config(write(root, files), env or {})


def problems(root: Path, files: dict[str, str], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(root, files), env or {})
    return [str(p).replace(f"{root}/", "") for p in info.value.problems]


def stats_of(config: Config, name: str = "acme") -> ObjectConfig:
    spec = config.integrations[name].stats
    assert spec is not None
    return spec


def field(spec: ObjectConfig, target: str) -> FieldSpec:
    return next(f for f in spec.fields if f.target == target)


def test_an_integration_takes_its_mappings_rules(tmp_path: Path) -> None:
    stats = stats_of(load(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": ACME}))
    assert [f.target for f in stats.fields] == [
        "course", "user", "progress", "score", "timeSpent", "firstActivityAt", "lastActivityAt",
    ]  # fmt: skip
    score = field(stats, "score")
    assert (score.column, score.type) == ("score", "number")
    # the rule is written in syncer.yaml; its use in acme.yaml
    assert (
        score.where
        == f"{tmp_path}/syncer.yaml:15:7 (used by integrations.acme.stats at {tmp_path}/acme.yaml:6:7)"
    )
    user = field(stats, "user")
    assert (user.identifier, user.column, user.lower, user.trim) == ("mail", "email", True, True)


def test_the_integrations_fields_replace_the_mappings_field_by_field(tmp_path: Path) -> None:
    acme = ACME + (
        "      fields:\n"
        "        score: points\n"  # replaces the mapping's score, wholly: no type number any more
        "        user: {internalId: learner_id}\n"  # an identifier: the other kind replaces it
        "        lang: language\n"  # one more
    )
    stats = stats_of(load(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": acme}))
    assert [f.target for f in stats.fields] == [
        "course", "user", "progress", "score", "timeSpent", "firstActivityAt", "lastActivityAt", "lang",
    ]  # fmt: skip
    score, user = field(stats, "score"), field(stats, "user")
    assert (score.column, score.type, score.where) == ("points", None, f"{tmp_path}/acme.yaml:8:9")
    assert (user.identifier, user.column) == ("internalId", "learner_id")


def test_a_mapping_written_out_in_full_is_the_same_config(tmp_path: Path) -> None:
    mapped = stats_of(load(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": ACME}))
    rules = MAIN.split("    fields:\n", 1)[1].replace("\n      ", "\n        ")
    inline = MAIN.split("mappings:", 1)[0] + ACME.replace("      mapping: lms\n", "      fields:\n  " + rules)
    (tmp_path / "one").mkdir()
    written = stats_of(load_config(write(tmp_path / "one", {"c.yaml": inline}) / "c.yaml", {}))
    assert [replace(f, where="") for f in mapped.fields] == [replace(f, where="") for f in written.fields]


def test_force_new_comes_from_the_mapping_unless_the_stats_say_it(tmp_path: Path) -> None:
    main = MAIN + "    force_new: {column: retake, type: boolean}\n"
    stats = stats_of(load(tmp_path, {"syncer.yaml": main, "acme.yaml": ACME}))
    rule = field(stats, "forceNew")
    assert (rule.column, rule.type, stats.force_new) == ("retake", "boolean", False)
    assert rule.where.startswith(f"{tmp_path}/syncer.yaml:19:5 (used by integrations.acme.stats at ")
    stats = stats_of(load(tmp_path, {"syncer.yaml": main, "acme.yaml": ACME + "      force_new: true\n"}))
    assert stats.force_new is True and "forceNew" not in [f.target for f in stats.fields]


def test_defaults_are_taken_unless_given_and_a_mappings_force_new_wins(tmp_path: Path) -> None:
    main = MAIN.replace(
        "sources:",
        "defaults:\n"
        "  courses: {on_drift: report, archive_missing: true, tolerate_invalid: 3}\n"
        "  stats: {tolerate_invalid: 2%, on_unsafe_change: send, force_new: true}\n"
        "sources:",
    )
    beta = ACME.replace("acme:", "beta:").replace(OID, OID.replace("1", "2")) + "      tolerate_invalid: 5\n"
    config = load(tmp_path, {"syncer.yaml": main, "acme.yaml": ACME, "beta.yaml": beta})
    acme, beta_stats = stats_of(config), stats_of(config, "beta")
    assert (acme.tolerate_invalid, acme.on_unsafe_change, acme.force_new) == (
        Tolerance(share=0.02), UnsafeChange.SEND, True,
    )  # fmt: skip
    assert beta_stats.tolerate_invalid == Tolerance(count=5)
    with_rule = main.replace(
        "      lastActivityAt: finished\n", "      lastActivityAt: finished\n    force_new: false\n"
    )
    assert stats_of(load(tmp_path, {"syncer.yaml": with_rule, "acme.yaml": ACME})).force_new is False
    courses = (
        f"integrations:\n  acme:\n    id: {OID}\n    courses:\n      source: catalog\n      fields:\n"
        "        externalId: id\n        name: title\n        launchUrl: url\n"
        "        defaultLang: {value: en}\n"
        "        sources: {value: []}\n        subjects: {value: []}\n"
    )
    spec = load(tmp_path, {"syncer.yaml": main, "acme.yaml": courses}).integrations["acme"].courses
    assert spec is not None
    assert (spec.on_drift, spec.archive_missing, spec.tolerate_invalid) == (
        OnDrift.REPORT,
        True,
        Tolerance(count=3),
    )


def test_variables_of_a_mapping_and_of_a_default_are_typed(tmp_path: Path) -> None:
    main = MAIN.replace(
        "{column: pct, scale: 100}", "\n        column: pct\n        scale: ${SCALE:-100}"
    ).replace("sources:", "defaults:\n  stats:\n    tolerate_invalid: ${TOLERANCE:-7}\nsources:")
    stats = stats_of(load(tmp_path, {"syncer.yaml": main, "acme.yaml": ACME}, {"SCALE": "10"}))
    assert field(stats, "progress").scale == 10.0 and stats.tolerate_invalid == Tolerance(count=7)


# --- problems ---------------------------------------------------------------------------------


def test_an_unknown_mapping_is_located_at_its_use_with_a_suggestion(tmp_path: Path) -> None:
    acme = ACME.replace("mapping: lms", "mapping: lsm") + "      fields: {score: points}\n"
    assert problems(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": acme}) == [
        "acme.yaml:6:16: integrations.acme.stats.mapping: unknown mapping 'lsm'; did you mean 'lms'?",
    ]  # and nothing about the required fields the mapping would have given


def test_a_rule_of_a_mapping_is_wrong_at_its_definition_and_the_problem_names_the_use(tmp_path: Path) -> None:
    main = MAIN.replace("{column: score, type: number}", "{column: score, type: numeric}").replace(
        "firstActivityAt: started", "firstActivityAt: {column: started, unit: s}"
    )
    assert problems(tmp_path, {"syncer.yaml": main, "acme.yaml": ACME}) == [
        "syncer.yaml:15:36: mappings.lms.fields.score.type: must be one of: string, integer, number, "
        "boolean, datetime (got 'numeric') (used by integrations.acme.stats at acme.yaml:6:7)",
        "syncer.yaml:17:42: mappings.lms.fields.firstActivityAt.unit: unit applies to numbers only, not to a "
        "date-time (used by integrations.acme.stats at acme.yaml:6:7)",
    ]


def test_a_rule_wrong_in_itself_names_the_first_use_in_every_run(tmp_path: Path) -> None:
    # jsonschema yields the errors of a mapping of names (integrations:) in set order, which
    # varies between processes: the problem must name the first use whatever that order.
    main = MAIN.replace("{column: score, type: number}", "{column: score, type: numeric}")
    more = "".join(
        f"  {name}:\n    id: {OID[:-1]}{i}\n    stats: {{source: progress, mapping: lms}}\n"
        for i, name in enumerate(["zulu", "yankee", "xray", "whisky", "victor", "uniform", "tango"])
    )
    assert problems(tmp_path, {"syncer.yaml": main, "acme.yaml": ACME + more}) == [
        "syncer.yaml:15:36: mappings.lms.fields.score.type: must be one of: string, integer, number, "
        "boolean, datetime (got 'numeric') (used by integrations.acme.stats at acme.yaml:6:7)",
    ]


STAT_RULES = "{course: {externalId: c}, user: {mail: m}, progress: p, timeSpent: t, firstActivityAt: f, " + (
    "lastActivityAt: l}"
)
COURSE_RULES = "{externalId: c, launchUrl: u, defaultLang: d, sources: {value: []}, subjects: {value: []}}"


def test_a_mapping_must_fit_each_use(tmp_path: Path) -> None:
    main = MAIN + "  both:\n    fields: {name: title, score: points}\n"
    courses = ACME.replace("stats:", "courses:").replace("source: progress", "source: catalog")
    more = f"""\
  beta:
    id: {OID.replace("1", "2")}
    stats: {{source: progress, mapping: both, fields: {STAT_RULES}}}
  gamma:
    id: {OID.replace("1", "3")}
    courses: {{source: catalog, mapping: both, fields: {COURSE_RULES}}}
"""
    assert problems(tmp_path, {"syncer.yaml": main, "acme.yaml": courses + more}) == [
        # a field only one kind takes: at the definition, naming each use it does not fit
        "syncer.yaml:20:14: mappings.both.fields.name: unknown key 'name'; expected one of: course, user, "
        "progress, score, result, lang, timeSpent, firstActivityAt, lastActivityAt (used by "
        "integrations.beta.stats at acme.yaml:9:31)",
        "syncer.yaml:20:27: mappings.both.fields.score: unknown key 'score'; did you mean 'sources'? "
        "(used by integrations.gamma.courses at acme.yaml:12:32)",
        # used by courses, a mapping of stats fields only: one problem, not one per field
        "acme.yaml:6:16: integrations.acme.courses.mapping: mapping 'lms' gives no field courses takes (it "
        "gives course, user, progress, score, timeSpent, firstActivityAt, lastActivityAt)",
    ]


def test_a_required_field_missing_from_mapping_and_fields(tmp_path: Path) -> None:
    main = MAIN.replace("      timeSpent: {column: seconds, unit: s}\n", "")
    assert problems(tmp_path, {"syncer.yaml": main, "acme.yaml": ACME}) == [
        "acme.yaml:6:16: integrations.acme.stats.mapping: the field 'timeSpent' is required: neither mapping "
        "'lms' nor fields: gives it",
    ]


def test_a_problem_of_a_default_is_at_the_default_and_names_the_use(tmp_path: Path) -> None:
    main = MAIN.replace("sources:", "defaults:\n  stats: {tolerate_invalid: 150%}\nsources:")
    assert problems(tmp_path, {"syncer.yaml": main, "acme.yaml": ACME}) == [
        "syncer.yaml:7:29: defaults.stats.tolerate_invalid: a share cannot exceed 100% (the default for "
        "integrations.acme.stats at acme.yaml:4:5)",
    ]


def test_a_mapping_is_declared_once_and_its_name_checked(tmp_path: Path) -> None:
    part = "mappings:\n  lms: {fields: {score: points}}\n  'bad name': {fields: {score: points}}\n"
    found = problems(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": ACME, "more.yaml": part})
    assert found == [
        "syncer.yaml:10:3: mappings.lms: declared again at more.yaml:2:3; a mapping's name is declared once "
        "across the config's files",
        "more.yaml:2:3: mappings.lms: already declared at syncer.yaml:10:3; a mapping's name is declared "
        "once across the config's files",
        "more.yaml:3:3: mappings.bad name: invalid name 'bad name': 'bad name' does not match "
        "'^[A-Za-z0-9_-]+$'",
    ]


def test_a_mapping_nobody_uses_is_a_warning(tmp_path: Path) -> None:
    courses = ACME.replace("      mapping: lms\n", "      mapping: lms\n") + (
        "mappings:\n  unused:\n    fields: {name: title}\n"
    )
    config = load(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": courses})
    assert [str(w).replace(f"{tmp_path}/", "") for w in config.warnings] == [
        "acme.yaml:8:3: mappings.unused: no integration's courses or stats uses this mapping"
    ]


def test_validate_names_each_use_of_a_mappings_column_that_is_not_in_the_source(tmp_path: Path) -> None:
    beta = ACME.replace("acme:", "beta:").replace(OID, OID.replace("1", "2"))
    write(tmp_path, {"syncer.yaml": MAIN, "acme.yaml": ACME, "beta.yaml": beta})
    (tmp_path / "stats.csv").write_text(
        "course_id,email,pct,points,seconds,started,finished\nC1,a@x.io,1,2,3,2025-01-01,2025-01-02\n",
        "utf-8",
    )
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    missing = f"{tmp_path}/syncer.yaml:15:7: column 'score' is not in source 'progress' (it has: course_id, "
    assert result.stderr.splitlines() == [
        f"{missing}email, finished, pct, points, seconds, started) (used by integrations.acme.stats at "
        f"{tmp_path}/acme.yaml:6:7)",
        f"{missing}email, finished, pct, points, seconds, started) (used by integrations.beta.stats at "
        f"{tmp_path}/beta.yaml:6:7)",
    ]

"""--redact: learner e-mails become stable tokens in every plan format, apply's report, rejected and logs.

The end-to-end tests run the demo config (configs/demo.yaml) through the CLI against the simulator
over loopback HTTP, collect every e-mail of the demo's data files, and look for each of them in
what the commands print (stdout and stderr); each is paired with the same run without --redact,
which must show them, so that the redacted run's silence means something.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from syncer.cli import cli
from syncer.models import (
    Change,
    ChangeAction,
    Effect,
    IntegrationSummary,
    KindCounts,
    RecordKind,
    UnsafeStat,
    stat_key,
)
from syncer.plan import Plan
from syncer.plan.saved import load_saved_plan
from syncer.progress import add_log_filter, configure_logging, log, remove_log_filter
from syncer.redaction import LOG_FILTER, MAIL, mail_token, redact_data, redact_text
from syncer.report import MARKDOWN_LIMIT, render_markdown
from syncer.resources import schema_path
from syncer.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SimulatorSettings, SimulatorThread
from tests.conftest import ROOT

TOKEN = re.compile(r"learner-[0-9a-f]{10}")
DEMO = ROOT / "configs" / "demo"


def demo_mails() -> set[str]:
    """Every e-mail in the demo's data files, lower-cased (the files write some in capitals)."""
    found = {m.lower() for path in DEMO.glob("*.csv") for m in MAIL.findall(path.read_text("utf-8"))}
    assert len(found) >= 50  # the demo's 80 learners, less any a row leaves out
    return found


MAILS = demo_mails()


def leaked(text: str) -> list[str]:
    """The demo e-mails in ``text`` (in any case), and anything else shaped like an e-mail."""
    lowered = text.lower()
    return sorted({m for m in MAILS if m in lowered} | set(MAIL.findall(text)))


# -- the token and the text ----------------------------------------------------------------------


def test_a_token_is_short_stable_and_ignores_case_and_blanks() -> None:
    token = mail_token("learner01@acme.example")
    assert TOKEN.fullmatch(token)
    assert mail_token(" LEARNER01@Acme.Example ") == token
    assert mail_token("learner02@acme.example") != token
    # Stable across processes and releases: a fixed value, so two runs' plans compare.
    assert token == "learner-b54a93f5d0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '["externalId","ACME-1","mail","ann@x.io","2025-03-01T09:00:00.000Z"]',
            '["externalId","ACME-1","mail","{ann}","2025-03-01T09:00:00.000Z"]',
            id="json-key",
        ),
        pytest.param("stat `ACME-1 · ann@x.io · 2025`", "stat `ACME-1 · {ann} · 2025`", id="markdown"),
        pytest.param("User with mail 'Ann@X.io' not found", "User with mail '{ann}' not found", id="quoted"),
        pytest.param("the attempt of ann@x.io.", "the attempt of {ann}.", id="sentence-dot"),
        pytest.param("a+b.c-d@mail.x.io|ann@x.io", "{plus}|{ann}", id="plus-and-pipe"),
        pytest.param("o'brien@x.io", "{obrien}", id="apostrophe-inside"),
        pytest.param("learner@x", "{short}", id="one-label-domain"),
        pytest.param("no address here: @ and a@ and @b", "no address here: @ and a@ and @b", id="none"),
    ],
)
def test_redact_text_replaces_each_address_and_keeps_what_surrounds_it(text: str, expected: str) -> None:
    tokens = {
        "ann": mail_token("ann@x.io"),
        "plus": mail_token("a+b.c-d@mail.x.io"),
        "obrien": mail_token("o'brien@x.io"),
        "short": mail_token("learner@x"),
    }
    assert redact_text(text) == expected.format(**tokens)
    assert redact_text(redact_text(text)) == redact_text(text)  # a token is never redacted again


def test_redact_data_walks_values_and_keys() -> None:
    data = {"ann@x.io": [{"message": "ann@x.io failed", "count": 3}, ("bob@x.io", None, True)]}
    ann, bob = mail_token("ann@x.io"), mail_token("bob@x.io")
    assert redact_data(data) == {ann: [{"message": f"{ann} failed", "count": 3}, [bob, None, True]]}


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The ``syncer`` logger as it was, and no redacting filter, after the test."""
    handlers, level, propagate = list(log.handlers), log.level, log.propagate
    try:
        yield
    finally:
        remove_log_filter(LOG_FILTER)
        log.handlers[:], log.propagate = handlers, propagate
        log.setLevel(level)


def test_log_lines_are_redacted_in_message_and_fields(
    logging_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    add_log_filter(LOG_FILTER)  # as the CLI does before or after configuring the lines
    configure_logging("json")
    key = stat_key({"type": "externalId", "value": "C1"}, {"type": "mail", "value": "ann@x.io"}, "2025")
    # A child logger, as the stages use: the filter sits on the handler, not on one logger.
    logging.getLogger("syncer.apply.run").warning(
        "statistic %s sent: %s", key, "the attempt of Ann@X.io", extra={"key": key, "mails": ["bob@x.io"]}
    )
    line = json.loads(capsys.readouterr().err)
    ann, bob = mail_token("ann@x.io"), mail_token("bob@x.io")
    assert line["message"] == f"statistic {key.replace('ann@x.io', ann)} sent: the attempt of {ann}"
    assert (line["key"], line["mails"]) == (key.replace("ann@x.io", ann), [bob])
    remove_log_filter(LOG_FILTER)
    logging.getLogger("syncer").warning("ann@x.io")
    assert "ann@x.io" in capsys.readouterr().err  # removed: lines are as they were


def test_redacted_markdown_is_bounded_with_its_tokens() -> None:
    # Tokens are longer than short addresses: the budget counts the redacted lines.
    keys = [
        stat_key({"type": "externalId", "value": "C"}, {"type": "mail", "value": f"{i}@x"}, "2025")
        for i in range(20_000)
    ]
    plan = Plan(
        plan_id="p",
        generation=1,
        summaries=[IntegrationSummary("acme", KindCounts(), KindCounts(new=20_000), 0, 0, 0, {})],
        changes=[Change("acme", RecordKind.STAT, k, ChangeAction.NEW, "s.csv:1") for k in keys],
        unsafe=[UnsafeStat("acme", k, "s.csv:1", ChangeAction.NEW, Effect.DUPLICATE, k) for k in keys],
        unsafe_total=20_000,
        held_total=20_000,
    )
    text = render_markdown(plan, redact=True)
    assert len(text) < MARKDOWN_LIMIT
    assert "more changes" in text and not MAIL.search(text)


# -- the CLI on the demo ---------------------------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of configs/demo.yaml and its data; its ledger lands beside it."""
    shutil.copy(ROOT / "configs" / "demo.yaml", tmp_path / "demo.yaml")
    shutil.copytree(DEMO, tmp_path / "demo")
    return tmp_path / "demo.yaml"


def run(*args: str) -> tuple[int, str]:
    """Exit code, and stdout and stderr together: an address must be in neither."""
    result = CliRunner().invoke(cli, list(args), prog_name="syncer")
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_plan_shows_no_demo_email_with_redact(demo: Path, fmt: str) -> None:
    code, plain = run("plan", str(demo), "--format", fmt)
    assert code == 0 and len(leaked(plain)) >= 50  # the same plan without --redact shows them
    code, redacted = run("plan", str(demo), "--format", fmt, "--redact")
    assert code == 0
    assert leaked(redacted) == []
    assert mail_token("learner01@acme.example") in redacted  # LEARNER01@ACME.EXAMPLE in stats.csv
    assert len(set(TOKEN.findall(redacted))) >= 20
    assert run("plan", str(demo), "--format", fmt, "--redact") == (code, redacted)  # same tokens
    if fmt == "json":
        data = json.loads(redacted)
        schema = json.loads(schema_path("plan.schema.json").read_text("utf-8"))
        assert list(Draft202012Validator(schema).iter_errors(data)) == []
        assert data["redacted"] is True
        stat = next(c for c in data["changes"] if c["kind"] == "stat")
        assert json.loads(stat["key"])[3] == TOKEN.search(stat["display_key"]).group(0)  # type: ignore[union-attr]
    else:
        assert "egend: " in redacted and " · learner-" in redacted


def test_a_saved_redacted_plan_holds_no_email_and_still_loads(demo: Path) -> None:
    out = demo.parent / "plan.json"
    code, printed = run("plan", str(demo), "--redact", "--out", str(out))
    assert code == 0 and leaked(printed) == []
    assert leaked(out.read_text("utf-8")) == []
    saved = load_saved_plan(out)
    assert saved.summary["redacted"] is True and saved.summary["changes_total"] > 0


def test_output_redact_in_the_config_turns_it_on(demo: Path) -> None:
    demo.write_text(demo.read_text("utf-8") + "output:\n  redact: true\n", "utf-8")
    code, text = run("plan", str(demo), "--format", "markdown")
    assert code == 0 and leaked(text) == [] and TOKEN.search(text)
    demo.write_text(demo.read_text("utf-8").replace("redact: true", "redact: 1"), "utf-8")
    code, text = run("validate", str(demo))
    assert code == 1 and f"{demo}:" in text and "redact" in text


def test_apply_simulate_with_redact_prints_no_demo_email(demo: Path) -> None:
    code, text = run(
        "--log-format", "json", "apply", str(demo), "--simulate", "--redact", "--poll-seconds", "0.01"
    )
    assert code == 0, text
    assert leaked(text) == [] and "invalid rows (never sent):" in text


# A platform that lacks two of the demo's learners: their statistics are rejected, with
# messages naming their e-mails.
MISSING = ("learner02@acme.example", "learner03@acme.example")


@pytest.fixture
def sim_settings() -> SimulatorSettings:
    return SimulatorSettings(
        op_seconds=0.05, write_rate=None, read_rate=None, users=frozenset(MAILS - set(MISSING))
    )


def edit_seconds(demo: Path, line: int) -> None:
    """One more minute of time spent on one row of stats.csv."""
    stats = demo.parent / "demo" / "stats.csv"
    lines = stats.read_text("utf-8").splitlines(keepends=True)
    row = lines[line - 1].split(";")
    row[5] = str(int(row[5]) + 60)
    lines[line - 1] = ";".join(row)
    stats.write_text("".join(lines), "utf-8")


@pytest.mark.parametrize("redact", [False, True], ids=["plain", "redacted"])
def test_apply_rejected_held_and_logs_on_the_simulator(
    demo: Path, sim_thread: SimulatorThread, monkeypatch: pytest.MonkeyPatch, redact: bool
) -> None:
    monkeypatch.setenv("L360_BASE_URL", sim_thread.base_url)
    monkeypatch.setenv("L360_CLIENT_ID", DEMO_CLIENT_ID)
    monkeypatch.setenv("L360_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    flag = ("--redact",) if redact else ()
    apply = ("--log-format", "json", "apply", str(demo), "--poll-seconds", "0.01", *flag)
    shown: dict[str, str] = {}

    code, shown["first apply"] = run(*apply)
    assert code == 3, shown["first apply"]  # the two missing learners' statistics are rejected
    code, shown["rejected"] = run("rejected", str(demo), *flag)
    code, shown["rejected json"] = run("rejected", str(demo), "--format", "json", *flag)
    assert json.loads(shown["rejected json"])["rejected"]

    # LEARNER01 completed ACME-020 (stats.csv:2): an edit would open a second attempt, so it is held.
    edit_seconds(demo, 2)
    code, shown["held apply"] = run(*apply)
    assert code == 3 and "held statistics (not sent" in shown["held apply"]
    for fmt in ("text", "markdown", "json"):
        code, shown[f"plan {fmt}"] = run("plan", str(demo), "--format", fmt, *flag)
        assert code == 3

    # Sent anyway (on_unsafe_change: send): apply logs the statistic, its key and its reason.
    demo.write_text(
        demo.read_text("utf-8").replace(
            "tolerate_invalid: 2%", "tolerate_invalid: 2%\n      on_unsafe_change: send"
        ),
        "utf-8",
    )
    code, shown["sent apply"] = run(*apply)
    logged = [json.loads(line) for line in shown["sent apply"].splitlines() if line.startswith("{")]
    sent = [line for line in logged if "sent despite an unsafe effect" in line["message"]]
    assert len(sent) == 1 and sent[0]["origin"] == "stats.csv:2"

    if redact:
        assert {what: leaked(text) for what, text in shown.items()} == {what: [] for what in shown}
        token = mail_token("learner01@acme.example")
        assert token in sent[0]["key"] and token in sent[0]["message"]
        assert {mail_token(m) for m in MISSING} <= set(TOKEN.findall(shown["rejected"]))
    else:
        # Without --redact each of these shows learners' addresses (the first apply counts its
        # rejections and names no learner; `syncer rejected` lists them): the check can fail.
        assert {what for what, text in shown.items() if not leaked(text)} == {"first apply"}
        assert "learner01@acme.example" in sent[0]["key"]


def test_redact_lasts_for_its_command_only(
    demo: Path, logging_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("plan", str(demo), "--redact")[0] == 0
    configure_logging("text")  # the next command in this process, without --redact
    logging.getLogger("syncer").warning("ann@x.io")
    assert "ann@x.io" in capsys.readouterr().err


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_final_error_line_is_redacted_too(demo: Path, log_format: str) -> None:
    args = ("--log-format", log_format, "plan", str(demo), "--integration", "ann@x.io")
    code, text = run(*args)
    assert code == 1 and "no integration named ann@x.io" in text
    code, text = run(*args, "--redact")
    assert code == 1 and f"no integration named {mail_token('ann@x.io')}" in text and not MAIL.search(text)

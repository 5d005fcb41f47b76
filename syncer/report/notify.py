"""Alerts: the webhooks of ``notify:``, called once at the end of an apply (docs/alerts.md).

Each webhook whose ``on`` meets one of the run's outcomes gets one POST: syncer's JSON object
(``json_payload``, documented field by field in docs/alerts.md) or a Slack-compatible message
(``slack_payload``). Webhooks are called together, each within its ``timeout_seconds``, and the
whole call is bounded. A webhook that fails (refused, no answer in time, an answer other than
2xx, redirects included) is logged as a warning; it never changes the run's exit code. A
webhook's URL is a secret: messages name the webhook and show only its scheme and host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from syncer.config import NotifyFormat, NotifyOutcome, Webhook
from syncer.progress import event, log
from syncer.report.runend import RunEnd, iso

PAYLOAD_VERSION = 1
"""The ``version`` of the JSON payload: raised when a field changes meaning or goes away."""
SLACK_LINES = 20
"""Integrations a Slack message lists; the others are counted."""
ERROR_CHARS = 1_000
"""The error message is cut to this length in a payload."""
_GRACE_SECONDS = 1.0  # on top of the longest webhook timeout: the bound of the whole call


@dataclass(frozen=True)
class Delivery:
    """What came of one webhook call: ``error`` is None when it answered 2xx."""

    webhook: Webhook
    triggered_by: tuple[NotifyOutcome, ...]
    status: int | None = None
    error: str | None = None


def redact_webhook(url: str) -> str:
    """A webhook URL as logs show it: scheme and host only (``https://hooks.slack.com/***``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "***"
    hidden = "/***" if parts.path not in ("", "/") or parts.query else "/"
    return f"{parts.scheme}://{host}{port}{hidden}"


def due(webhooks: Sequence[Webhook], end: RunEnd) -> list[tuple[Webhook, tuple[NotifyOutcome, ...]]]:
    """The webhooks this run calls, each with the outcomes of its ``on`` that the run met."""
    out = []
    for hook in webhooks:
        met = tuple(o for o in end.outcomes(hook.rejected_above) if o in hook.on)
        if met:
            out.append((hook, met))
    return out


def summary_line(end: RunEnd) -> str:
    """One line a person reads first: ``syncer apply failed (exit 4) on HOST: ERROR``."""
    outcomes = end.outcomes()
    report = end.report
    where = f"on {end.run.host} ({end.config.name})"
    if NotifyOutcome.FAILED in outcomes:
        head = f"syncer apply failed (exit {end.exit_code}) {where}"
    elif NotifyOutcome.GUARD in outcomes:
        head = f"syncer apply refused by a safety guard (exit {end.exit_code}) {where}"
    else:
        parts = []
        if report is not None and report.rejected:
            parts.append(f"{report.rejected:,} record(s) rejected")
        if report is not None and report.held:
            parts.append(f"{report.held:,} statistic(s) held")
        if NotifyOutcome.INVALID in outcomes:
            parts.append("invalid rows beyond tolerate_invalid")
        if NotifyOutcome.RECOVERED in outcomes:
            runs = end.history.failed_before
            parts.insert(0, f"recovered after {runs} failed run{'s' * (runs != 1)}")
        head = f"syncer apply finished (exit {end.exit_code}) {where}"
        if parts:
            head += ": " + ", ".join(parts)
    if end.error:
        head += f": {_cut(end.error)}"
    return head


def json_payload(end: RunEnd, triggered_by: Sequence[NotifyOutcome] = ()) -> dict[str, Any]:
    """syncer's JSON object for one run (docs/alerts.md lists every field)."""
    outcomes = end.outcomes()
    report = end.report
    integrations: dict[str, dict[str, Any]] = {}
    if report is not None:
        for name, o in report.integrations.items():
            integrations[name] = {
                "operations": o.operations,
                "failed_operations": o.failed_operations,
                "synced": o.synced,
                "rejected": o.rejected,
                "invalid": o.invalid,
                "invalid_beyond_tolerance": o.invalid_beyond_tolerance,
                "held": o.held,
            }
    totals = {
        key: sum(i[key] for i in integrations.values())
        for key in ("operations", "failed_operations", "synced", "rejected", "invalid", "held")
    }
    return {
        "source": "syncer",
        "version": PAYLOAD_VERSION,
        "command": "apply",
        "outcome": outcomes[0].value if outcomes else "succeeded" if end.succeeded else "finished",
        "outcomes": [o.value for o in outcomes],
        "triggered_by": [o.value for o in triggered_by],
        "exit_code": end.exit_code,
        "summary": summary_line(end),
        "error": _cut(end.error) if end.error else None,
        "config": str(end.config),
        "run": {
            "run_id": end.run.run_id,
            "syncer_version": end.run.syncer_version,
            "host": end.run.host,
            "ledger_run_id": report.run_id if report is not None else None,
        },
        "started_at": iso(end.started_at),
        "finished_at": iso(end.ended_at),
        "duration_seconds": round(end.duration, 3),
        "failed_runs_before": end.history.failed_before,
        "answers_429": end.answers_429,
        "totals": totals if report is not None else None,
        "integrations": integrations if report is not None else None,
    }


def slack_payload(end: RunEnd, triggered_by: Sequence[NotifyOutcome] = ()) -> dict[str, Any]:
    """A Slack-compatible message: ``text`` (the summary line, for notifications and clients
    without blocks) and ``blocks``: the summary, one line per integration, the run's identity."""
    data = json_payload(end, triggered_by)
    icon = {"failed": ":x:", "guard": ":octagonal_sign:", "recovered": ":white_check_mark:"}
    text = f"{icon.get(data['outcome'], ':warning:')} {_slack(data['summary'])}"
    lines = [
        f"`{_slack(name)}`: {c['operations']:,} operation(s) · synced {c['synced']:,} · "
        f"rejected {c['rejected']:,} · invalid {c['invalid']:,} · held {c['held']:,}"
        + (f" · {c['failed_operations']:,} operation(s) ended in error" if c["failed_operations"] else "")
        for name, c in (data["integrations"] or {}).items()
    ]
    if len(lines) > SLACK_LINES:
        lines[SLACK_LINES:] = [f"and {len(lines) - SLACK_LINES:,} more integration(s)"]
    run = data["run"]
    context = (
        f"outcome *{data['outcome']}* · exit {data['exit_code']} · config `{_slack(data['config'])}` · "
        f"run `{run['run_id']}` · syncer {_slack(run['syncer_version'])} · host `{_slack(run['host'])}`"
    )
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2_900]}}]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2_900]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context[:2_900]}]})
    return {"text": text, "blocks": blocks}


def notify(webhooks: Sequence[Webhook], end: RunEnd) -> list[Delivery]:
    """Call every webhook this run is due to call, once each; log each one's outcome.

    Never raises for a webhook's failure: it is logged as a warning and reported in its
    ``Delivery``. Returns at the latest ``timeout_seconds`` of the slowest webhook (plus a second)
    after it was called.
    """
    calls = due(webhooks, end)
    if not calls:
        return []
    return asyncio.run(_notify_all(calls, end))


async def _notify_all(calls: list[tuple[Webhook, tuple[NotifyOutcome, ...]]], end: RunEnd) -> list[Delivery]:
    bound = max(hook.timeout_seconds for hook, _ in calls) + _GRACE_SECONDS
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        tasks = [asyncio.create_task(_post(session, hook, met, end)) for hook, met in calls]
        done, pending = await asyncio.wait(tasks, timeout=bound)
        for task in pending:  # cannot happen (each call has its own timeout): the bound holds anyway
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    deliveries = []
    for (hook, met), task in zip(calls, tasks, strict=True):
        if task in done and not task.cancelled() and task.exception() is None:
            deliveries.append(task.result())
        else:
            deliveries.append(Delivery(hook, met, error=f"no answer within {bound:g} s"))
    for delivery in deliveries:
        _log(delivery, end)
    return deliveries


async def _post(
    session: aiohttp.ClientSession, hook: Webhook, met: tuple[NotifyOutcome, ...], end: RunEnd
) -> Delivery:
    """POST one webhook's payload; the Delivery says how it went (never raises for the network)."""
    payload = slack_payload(end, met) if hook.format is NotifyFormat.SLACK else json_payload(end, met)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"syncer/{end.run.syncer_version}",
    }
    try:
        async with asyncio.timeout(hook.timeout_seconds):
            async with session.post(
                hook.url.reveal(), data=orjson.dumps(payload), headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status  # the body is not read: nothing in it matters
    except TimeoutError:
        return Delivery(hook, met, error=f"no answer within {hook.timeout_seconds:g} s")
    except aiohttp.ClientConnectorError as exc:
        return Delivery(hook, met, error=f"cannot connect ({type(exc).__name__})")
    except (aiohttp.ClientError, ValueError) as exc:  # ValueError: aiohttp's InvalidURL is one
        return Delivery(hook, met, error=f"failed ({type(exc).__name__})")
    if not 200 <= status < 300:
        return Delivery(hook, met, status=status, error=f"answered {status}")
    return Delivery(hook, met, status=status)


def _log(delivery: Delivery, end: RunEnd) -> None:
    hook = delivery.webhook
    shown = f"webhook {hook.name} ({redact_webhook(hook.url.reveal())})"
    fields = {"webhook": hook.name, "outcomes": [o.value for o in delivery.triggered_by]}
    if delivery.error is None:
        event(
            f"notified {shown}: {', '.join(fields['outcomes'])}, answered {delivery.status}",
            **fields,
            status=delivery.status,
        )
        return
    log.warning(
        "%s failed: %s; the run's exit code (%d) is unchanged",
        shown,
        delivery.error,
        end.exit_code,
        extra={**fields, "error": delivery.error, "status": delivery.status},
    )


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def _slack(text: str) -> str:
    """Text for Slack's mrkdwn: &, < and > escaped, as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

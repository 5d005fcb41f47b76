"""Fault rules: which requests to answer with an error, drop, slow down or turn into failures."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, fields
from typing import Any

from syncer.errors import SyncerError


class FaultRuleError(SyncerError):
    """A fault rule given to the simulator is malformed."""


_STATUSES = (429, 500, 503)
# A documented refusal (a 4xx with a ``code``), injected where the simulator cannot reach it
# otherwise, e.g. duplicateExternalPlatform when two clients create the same integration at once.
_REFUSAL_STATUSES = (400, 403, 404)
_GATEWAY_STATUSES = (500, 502, 503, 504)
TOKEN_PATH = "/api/v2/oauth2/token"
_SHAPES = ("flat", "structured")


@dataclass(frozen=True)
class FaultRule:
    """One rule: which requests it matches (method, path prefix, path regex) and what it does.

    Exactly one action: ``status`` (500, 503 or 429 with ``shape`` flat or structured; 400, 403
    or 404 with a ``code``, a documented refusal),
    ``drop`` (perform the request, then close the connection without an answer),
    ``gateway`` (perform the request, then answer that 5xx status with an HTML page, as a proxy
    in front of the platform would), ``delay`` (seconds to wait before handling),
    ``error_operation`` (the matching submission's operation ends in ``error``),
    ``expire_tokens`` (revoke every issued token now) or ``reverse_results`` (a JSON array
    answer, an operation's results, comes in reverse order: their order is undocumented).
    The rule applies to the next ``count`` matching requests; without ``path`` or ``path_regex``
    it matches every /api request except the token endpoint.
    """

    method: str | None = None
    path: str | None = None
    path_regex: str | None = None
    count: int = 1
    status: int | None = None
    shape: str | None = None
    retry_after: float | None = None
    drop: bool = False
    gateway: int | None = None
    delay: float | None = None
    error_operation: bool = False
    expire_tokens: bool = False
    reverse_results: bool = False
    message: str = "Simulated failure"
    code: str | None = None

    def matches(self, method: str, path: str) -> bool:
        """True when the request's method and path fall under this rule."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None and self.path_regex is None and path == TOKEN_PATH:
            # A rule must name the token endpoint to act on it: "fail the next 3 calls" means
            # API calls, not the token requests a client makes on the way.
            return False
        if self.path is not None and not path.startswith(self.path):
            return False
        return self.path_regex is None or re.search(self.path_regex, path) is not None

    def as_json(self) -> dict[str, Any]:
        """The rule as JSON data (only its set fields)."""
        defaults = FaultRule()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(defaults, f.name) or f.name == "count"
        }


def build_fault_rule(data: Any) -> FaultRule:
    """A FaultRule from its JSON form; FaultRuleError says what is wrong."""
    if not isinstance(data, dict):
        raise FaultRuleError("a fault rule must be a JSON object")
    known = {f.name: f for f in fields(FaultRule)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise FaultRuleError(f"unknown fault rule keys: {', '.join(unknown)}")
    checks: dict[str, tuple[type, ...]] = {
        "method": (str,),
        "path": (str,),
        "path_regex": (str,),
        "count": (int,),
        "status": (int,),
        "shape": (str,),
        "retry_after": (int, float),
        "drop": (bool,),
        "gateway": (int,),
        "delay": (int, float),
        "error_operation": (bool,),
        "expire_tokens": (bool,),
        "reverse_results": (bool,),
        "message": (str,),
        "code": (str,),
    }
    for key, value in data.items():
        wrong_bool = isinstance(value, bool) and bool not in checks[key]
        if value is not None and (wrong_bool or not isinstance(value, checks[key])):
            raise FaultRuleError(f"fault rule key {key!r} has the wrong type")
    rule = FaultRule(**data)
    actions = [
        rule.status is not None,
        rule.drop,
        rule.gateway is not None,
        rule.delay is not None,
        rule.error_operation,
        rule.expire_tokens,
        rule.reverse_results,
    ]
    if sum(actions) != 1:
        raise FaultRuleError(
            "a fault rule needs exactly one action: "
            "status, drop, gateway, delay, error_operation, expire_tokens, reverse_results"
        )
    if rule.status is not None and rule.status in _REFUSAL_STATUSES:
        if rule.code is None:
            raise FaultRuleError(f"fault status {rule.status} needs the refusal's code")
    elif rule.status is not None and rule.status not in _STATUSES:
        raise FaultRuleError(f"fault status must be one of {_STATUSES + _REFUSAL_STATUSES}")
    if rule.gateway is not None and rule.gateway not in _GATEWAY_STATUSES:
        raise FaultRuleError(f"fault gateway status must be one of {_GATEWAY_STATUSES}")
    if rule.shape is not None and rule.shape not in _SHAPES:
        raise FaultRuleError(f"fault shape must be one of {_SHAPES}")
    if rule.count < 1:
        raise FaultRuleError("fault count must be at least 1")
    if rule.delay is not None and rule.delay < 0:
        raise FaultRuleError("fault delay must not be negative")
    if rule.path_regex is not None:
        try:
            re.compile(rule.path_regex)
        except re.error as exc:
            raise FaultRuleError(f"fault path_regex does not compile: {exc}") from exc
    return rule


class FaultBook:
    """The active fault rules and how many matches each has left (thread-safe)."""

    def __init__(self) -> None:
        self._rules: list[list[Any]] = []  # [rule, remaining]
        self._lock = threading.Lock()

    def add(self, rules: list[FaultRule]) -> None:
        """Append rules; they act after the ones already present."""
        with self._lock:
            self._rules.extend([rule, rule.count] for rule in rules)

    def clear(self) -> None:
        """Drop every rule."""
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str, *, submission: bool) -> list[FaultRule]:
        """Consume and return the rules that act on this request.

        ``submission`` selects the kind: error_operation rules act only when an operation is
        created; every other rule acts when the request arrives.
        """
        taken: list[FaultRule] = []
        with self._lock:
            for entry in self._rules:
                rule: FaultRule = entry[0]
                if rule.error_operation != submission or entry[1] <= 0:
                    continue
                if rule.matches(method, path):
                    entry[1] -= 1
                    taken.append(rule)
            self._rules = [entry for entry in self._rules if entry[1] > 0]
        return taken

    def as_json(self) -> list[dict[str, Any]]:
        """The rules left, with their remaining counts."""
        with self._lock:
            return [{**entry[0].as_json(), "remaining": entry[1]} for entry in self._rules]

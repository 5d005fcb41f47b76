"""Simulated time and the bulk operation whose status is a function of it.

``SimClock`` is wall-clock time plus an offset that tests advance; ``Operation`` goes pending ->
queued -> running -> completed | error as that time passes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from syncer.models import OperationStatus, OperationType
from syncer.simulator import rules


class SimClock:
    """Wall-clock time plus an offset that tests can advance."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch, simulated."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Jump forward: tokens age, operations progress, rate windows slide."""
        self._offset += seconds


def iso(moment: float) -> str:
    """An epoch time as the API's UTC timestamp."""
    return rules.format_time(datetime.fromtimestamp(moment, UTC))


class Operation:
    """One bulk operation; its status is a function of the time."""

    def __init__(
        self,
        *,
        op_id: str,
        seq: int,
        op_type: OperationType,
        company_id: str,
        integration_id: str,
        items: list[Any],
        created: float,
        duration: float,
        fail_message: str | None,
    ) -> None:
        self.op_id = op_id
        self.seq = seq
        self.type = op_type
        self.company_id = company_id
        self.integration_id = integration_id
        self.items = items
        self.created = created
        # UNDOCUMENTED: pacing. pending for the first 10% of op_seconds, queued until 20%,
        # running until 100%; items are applied progressively while running.
        self.queued = created + 0.1 * duration
        self.started = created + 0.2 * duration
        self.ended = created + duration
        self.fail_message = fail_message
        self.results: list[dict[str, Any]] = []
        self.finished = False

    def status(self, now: float) -> OperationStatus:
        """The status at ``now``."""
        if now >= self.ended:
            return OperationStatus.ERROR if self.fail_message else OperationStatus.COMPLETED
        if now >= self.started:
            return OperationStatus.RUNNING
        if now >= self.queued:
            return OperationStatus.QUEUED
        return OperationStatus.PENDING

    def due(self, now: float) -> int:
        """How many items should have been processed at ``now``."""
        if self.fail_message:
            # UNDOCUMENTED: an operation ending in `error` applies none of its items.
            return 0
        if now >= self.ended:
            return len(self.items)
        if now < self.started:
            return 0
        share = (now - self.started) / (self.ended - self.started)
        return min(len(self.items), int(len(self.items) * share))

    def dto(self, now: float) -> dict[str, Any]:
        """The official DTO of this operation's status at ``now`` (one of the five shapes)."""
        status = self.status(now)
        out: dict[str, Any] = {
            "_id": self.op_id,
            "type": str(self.type),
            "createdAt": iso(self.created),
            "status": str(status),
        }
        if status is OperationStatus.PENDING:
            return out
        out["queuedAt"] = iso(self.queued)
        if status is OperationStatus.QUEUED:
            return out
        out["startedAt"] = iso(self.started)
        done = len(self.results)
        if status is OperationStatus.RUNNING:
            span = self.ended - self.started
            reached = self.started + (span * done / len(self.items) if self.items else 0.0)
        else:
            out["endedAt"] = iso(self.ended)
            reached = self.ended
        # UNDOCUMENTED: progress.index counts the processed items (1-based index of the last
        # processed one; 0 before the first).
        out["progress"] = {"index": done, "updatedAt": iso(reached)}
        if status is OperationStatus.ERROR:
            out["errorMessage"] = self.fail_message
        return out

"""Bulk operations: poll a ``Location`` to its end, read its per-item results, recover lost submissions.

This module never touches the ledger: it returns data and apply's executor records it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from syncer.api.client import ApiClient, operation_id
from syncer.errors import ApiUnavailable
from syncer.models import ItemResult, OperationStatus, OperationType, Payloads, dumps_canonical

__all__ = [
    "PollPolicy",
    "SentItems",
    "echoed_results",
    "fetch_item_results",
    "find_submitted_operation",
    "match_results",
    "operation_id",
    "pair_results",
    "wait_for_operation",
]

log = logging.getLogger(__name__)

_FINISHED = frozenset({OperationStatus.COMPLETED.value, OperationStatus.ERROR.value})
MISSING_RESULT = "the operation's results hold no entry for this item"

ProgressCallback = Callable[[Mapping[str, Any]], Awaitable[object] | object]
KnownIds = Callable[[Sequence[str]], Collection[str]]
"""Given operation ids, returns those already recorded for other batches."""


@dataclass(frozen=True)
class PollPolicy:
    """How to poll an operation: ``first`` seconds, growing by ``factor`` up to ``maximum``.

    ``timeout`` (seconds, None = wait forever) bounds one wait; running out raises
    ``ApiUnavailable`` and the operation stays in flight for the next run to resume.
    """

    first: float = 1.0
    factor: float = 1.5
    maximum: float = 15.0
    timeout: float | None = None


def _plain(value: Any) -> Any:
    """JSON-ready copy: mappings to dicts, sequences to lists, integral floats to ints.

    The API echoes inputs through JSON (JavaScript numbers), so ``100.0`` comes back as ``100``.
    """
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _canonical(value: Any) -> bytes:
    """Canonical JSON of an item, for matching results to submitted items."""
    return dumps_canonical(_plain(value))


@dataclass(frozen=True)
class SentItems:
    """What apply keeps of a submitted batch kept as text while it runs: each item's hash.

    The texts themselves are in the ledger (``operation_items``): 3 MB a 10,000-item batch, for
    each batch in flight. The hash is of the item's canonical JSON bytes, with this process's
    ``hash`` (64 bits: an echo that differs passes for the item once in 2**64).
    """

    hashes: array[int]

    @classmethod
    def of(cls, items: Payloads) -> SentItems:
        """The hashes of ``items``, in order."""
        return cls(array("q", [hash(text.encode()) for text in items.texts]))

    def __len__(self) -> int:
        return len(self.hashes)


def echoed_results(sent: SentItems, results: Sequence[Mapping[str, Any]]) -> list[ItemResult] | None:
    """The results of a batch whose answer repeats every item in order, as it was sent (each
    ``input`` the item's canonical JSON); None otherwise: pair them with the items then
    (``pair_results``)."""
    if len(results) != len(sent):
        return None
    for result, sent_hash in zip(results, sent.hashes, strict=True):
        echoed = result.get("input")
        if type(echoed) is not dict or hash(dumps_canonical(echoed)) != sent_hash:
            return None
    return _item_results([r["input"] for r in results], list(results))


def match_results(
    items: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any] | None], list[Mapping[str, Any]]]:
    """Pair each submitted item with its result by ``input``; returns (per item, unmatched results).

    Result order is undocumented, so matching is by canonical JSON, duplicates in order. A
    result whose echoed ``input`` carries extra keys (defaults filled in by the API) still
    matches an item whose every key it repeats.
    """
    if len(results) == len(items) and all(
        r.get("input") == item for r, item in zip(results, items, strict=True)
    ):
        # Fast path: the results echo the items in order (dict equality already treats 100.0
        # and 100 alike), so there is no need to build canonical JSON of each.
        return list(results), []
    slots: dict[bytes, deque[int]] = defaultdict(deque)
    for position, item in enumerate(items):
        slots[_canonical(item)].append(position)
    matched: list[Mapping[str, Any] | None] = [None] * len(items)
    leftovers: list[Mapping[str, Any]] = []
    for result in results:
        echoed = result.get("input")
        queue = slots.get(_canonical(echoed)) if isinstance(echoed, Mapping) else None
        if queue:
            matched[queue.popleft()] = result
        else:
            leftovers.append(result)
    if not leftovers:
        return matched, leftovers
    # Fallback, by key set: index the unmatched items by the projection on their own keys.
    by_keys: dict[frozenset[str], dict[bytes, deque[int]]] = defaultdict(lambda: defaultdict(deque))
    for position, item in enumerate(items):
        if matched[position] is None:
            keys = frozenset(str(k) for k in item)
            by_keys[keys][_canonical(item)].append(position)
    rest: list[Mapping[str, Any]] = []
    for result in leftovers:
        echoed = result.get("input")
        found = None
        if isinstance(echoed, Mapping):
            for keys, index in by_keys.items():
                if keys <= echoed.keys():
                    queue = index.get(_canonical({k: echoed[k] for k in keys}))
                    if queue:
                        found = queue.popleft()
                        break
        if found is None:
            rest.append(result)
        else:
            matched[found] = result
    return matched, rest


_END_MARGIN = 0.05  # seconds added to an operation's estimated end before polling it again


def seconds_left(operation: Mapping[str, Any], items: int) -> float | None:
    """Seconds until a running operation should end, from its own progress rate (None: unknown)."""
    progress = operation.get("progress")
    if operation.get("status") != OperationStatus.RUNNING.value or not isinstance(progress, Mapping):
        return None
    try:
        done = float(progress["index"])
        started = datetime.fromisoformat(str(operation["startedAt"]))
        updated = datetime.fromisoformat(str(progress["updatedAt"]))
    except (KeyError, TypeError, ValueError):
        return None
    elapsed = (updated - started).total_seconds()
    if done <= 0 or elapsed <= 0 or items <= done:
        return None
    return (items - done) * elapsed / done


async def wait_for_operation(
    client: ApiClient,
    location: str,
    *,
    poll: PollPolicy = PollPolicy(),
    on_progress: ProgressCallback | None = None,
    items: int | None = None,
) -> dict[str, Any]:
    """Poll an operation until it is ``completed`` or ``error``; returns its last state.

    Polls follow ``poll`` (first delay growing by factor up to maximum). Given the batch's
    ``items``, once the operation reports progress the next poll comes just after its estimated
    end, so a slot is not left idle for most of a poll interval. ``on_progress`` (plain or async)
    is called with the operation whenever its status or ``progress.index`` changes.
    """
    loop = asyncio.get_running_loop()
    deadline = None if poll.timeout is None else loop.time() + poll.timeout
    delay = poll.first
    floor = min(poll.first, 0.25)
    last_seen: tuple[Any, Any] | None = None
    while True:
        operation = await client.fetch_operation(location)
        status = operation.get("status")
        progress = operation.get("progress")
        seen = (status, progress.get("index") if isinstance(progress, Mapping) else None)
        if on_progress is not None and seen != last_seen:
            outcome = on_progress(operation)
            if inspect.isawaitable(outcome):
                await outcome
        last_seen = seen
        if status in _FINISHED:
            return operation
        left = None if items is None else seconds_left(operation, items)
        pause = delay if left is None else max(floor, min(delay, left + _END_MARGIN))
        if deadline is not None and loop.time() + pause > deadline:
            raise ApiUnavailable(
                f"bulk operation {operation_id(location)} still {status} after {poll.timeout:g} s; "
                "it stays in flight and the next run resumes it"
            )
        await asyncio.sleep(pause)
        delay = min(poll.maximum, delay * poll.factor)


async def fetch_item_results(
    client: ApiClient, location: str, items: Sequence[Mapping[str, Any]]
) -> list[ItemResult]:
    """One ItemResult per submitted item (``position`` = its index), matched by ``input``.

    An item the results do not mention is reported as a failure with ``MISSING_RESULT``.
    """
    return pair_results(location, items, await client.fetch_results(location))


def pair_results(
    location: str, items: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]
) -> list[ItemResult]:
    """One ItemResult per submitted item of the operation at ``location``, matched by ``input``."""
    if isinstance(items, Payloads):
        # Each result repeats its item: the echoed input is the item, with no need to decode it.
        echoed = echoed_results(SentItems.of(items), results)
        if echoed is not None:
            return echoed
    items = list(items)  # Payloads decode each item on access: once here
    matched, leftovers = match_results(items, results)
    if leftovers:
        log.warning(
            "bulk operation %s: %d result(s) match no submitted item",
            operation_id(location),
            len(leftovers),
        )
    return _item_results(items, matched)


def _item_results(
    items: Sequence[Mapping[str, Any]], matched: Sequence[Mapping[str, Any] | None]
) -> list[ItemResult]:
    out: list[ItemResult] = []
    for position, (item, result) in enumerate(zip(items, matched, strict=True)):
        if result is None:
            out.append(ItemResult(position, False, None, MISSING_RESULT, item))
            continue
        success = result.get("status") == "success"
        resource = result.get("resourceId")
        message = result.get("errorMessage")
        out.append(
            ItemResult(
                position=position,
                success=success,
                resource_id=str(resource) if resource is not None else None,
                message=None if success else str(message or "the API reported an error without a message"),
                input=item,
            )
        )
    return out


async def find_submitted_operation(
    client: ApiClient,
    op_type: OperationType,
    items: Sequence[Mapping[str, Any]],
    *,
    created_after: datetime,
    poll: PollPolicy = PollPolicy(),
    skew: timedelta = timedelta(minutes=2),
    known: KnownIds | None = None,
    settle: float = 0.0,
) -> str | None:
    """The Location of an operation that already carries this batch, or None.

    Looks at the operations of ``op_type`` created since ``created_after`` (minus ``skew`` for
    clock differences), oldest first; waits for unfinished ones (their results are not readable
    before), then compares their results' inputs with the batch as a multiset. ``known`` names,
    among the candidates' ids, those already recorded for other batches (the ledger's): they are
    never adopted, so an identical batch sent again (a retried rejection) is not mistaken for them.

    ``settle`` (seconds from this call) is how long the platform may still be working on a
    request whose answer went wrong: the list is read again, paced by ``poll``, until a reading
    that starts after it has passed finds no match; only then is None returned.
    """
    loop = asyncio.get_running_loop()
    settled_at = loop.time() + settle
    delay = poll.first
    compared: set[str] = set()  # finished candidates already compared: their results never change
    told = False
    while True:
        final = loop.time() >= settled_at
        found = await _look_once(client, op_type, items, created_after - skew, poll, known, compared)
        if found is not None or final:
            return found
        if not told:
            told = True
            log.info(
                "no %s operation carries the lost batch yet; looking again for %g s before sending it again",
                op_type.value,
                settle,
            )
        await asyncio.sleep(max(0.0, min(delay, settled_at - loop.time())))
        delay = min(poll.maximum, delay * poll.factor)


async def _look_once(
    client: ApiClient,
    op_type: OperationType,
    items: Sequence[Mapping[str, Any]],
    created_gte: datetime,
    poll: PollPolicy,
    known: KnownIds | None,
    compared: set[str],
) -> str | None:
    """One reading of the operations list: the Location of the oldest match, or None."""
    candidates = [op async for op in client.fetch_operations(op_type=op_type, created_gte=created_gte)]
    candidates = [op for op in candidates if str(op.get("_id")) not in compared]
    if known is not None:
        taken = known([str(op.get("_id")) for op in candidates])
        candidates = [op for op in candidates if str(op.get("_id")) not in taken]
    # The list's sort order is undocumented: sort here so the oldest match wins.
    candidates.sort(key=lambda op: (str(op.get("createdAt", "")), str(op.get("_id", ""))))
    items = list(items)  # Payloads decode each item on access: once here
    wanted = Counter(_canonical(item) for item in items)
    for candidate in candidates:
        ident = candidate.get("_id")
        if not isinstance(ident, str) or not ident:
            continue
        if candidate.get("status") not in _FINISHED:
            await wait_for_operation(client, ident, poll=poll)
        results = await client.fetch_results(ident)
        compared.add(ident)
        if len(results) != len(items):
            continue
        echoed = Counter(_canonical(r.get("input")) for r in results)
        if echoed == wanted:
            return client.operation_url(ident)
        matched, leftovers = match_results(items, results)
        if not leftovers and all(
            m is not None and _only_defaults_added(item, m.get("input"))
            for item, m in zip(items, matched, strict=True)
        ):
            return client.operation_url(ident)
    return None


# Documented defaults the API may fill into an echoed item (bulk-api.json): an echo may add
# these, with these values, and still be the item we sent.
_ITEM_DEFAULTS: Mapping[str, Any] = {"forceNew": False, "contentType": "course"}


def _only_defaults_added(item: Mapping[str, Any], echoed: Any) -> bool:
    """True when ``echoed`` adds to ``item`` nothing but documented defaults.

    Adoption must be strict: an echo with ``forceNew: true`` is another batch than ours without
    it (the other would create attempts ours must not), even if every key of ours matches.
    """
    if not isinstance(echoed, Mapping):
        return False
    return all(
        key in _ITEM_DEFAULTS and _plain(echoed[key]) == _ITEM_DEFAULTS[key]
        for key in echoed.keys() - item.keys()
    )

"""The simulated platform's learners: the user directory and the book of attempts.

Every learner is a user with a 24-hex ``_id``. Attempts are kept per (integration, course id,
user id), as the attempt rules read them, and are also numbered in creation order (1, 2, ...):
the listing reads that log, or only one course's or one user's part of it through an index, so
that a listing filtered by course never scans every attempt.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from syncer.simulator.rules import Attempt, format_time

USER_STATUSES = ("active", "invited", "deleted")
AttemptKey = tuple[str, str, str]
"""(integration id, course id, user id) of an attempt history."""


def mail_key(mail: str) -> str:
    """How mails are compared (UNDOCUMENTED: case-insensitively, outer blanks ignored)."""
    return mail.strip().lower()


@dataclass(frozen=True, slots=True)
class User:
    """One user of the platform; ``mail`` is None for a learner known only by its id."""

    user_id: str
    seq: int
    mail: str | None = None
    status: str = "active"
    username: str | None = None
    lang: str = "en"

    def dto(self) -> dict[str, Any]:
        """The official ``UserDTO``."""
        out: dict[str, Any] = {"_id": self.user_id, "status": self.status, "lang": self.lang}
        if self.mail is not None:
            out["mail"] = self.mail
        if self.username is not None:
            out["username"] = self.username
        return out

    @property
    def label(self) -> str:
        """How ``/_sim/state`` names the learner of an attempt history (``mail:...``/``internalId:...``)."""
        return f"mail:{mail_key(self.mail)}" if self.mail is not None else f"internalId:{self.user_id}"


class Directory:
    """The users, by id and by mail, in creation order."""

    def __init__(self) -> None:
        self.by_id: dict[str, User] = {}
        self.mail_ids: dict[str, str] = {}
        """``mail_key(mail)`` -> user id."""
        self._order: list[str] = []  # user ids by seq: user number n is self._order[n - 1]

    def __iter__(self) -> Iterator[User]:
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)

    def since(self, after: int) -> Iterator[User]:
        """The users created after user number ``after``, in order (a page does not read the
        users before its cursor)."""
        for index in range(after, len(self._order)):
            yield self.by_id[self._order[index]]

    def with_mail(self, mail: str) -> User | None:
        """The user of that mail (compared by ``mail_key``)."""
        found = self.mail_ids.get(mail_key(mail))
        return None if found is None else self.by_id[found]

    def add(
        self,
        user_id: str,
        *,
        mail: str | None = None,
        status: str = "active",
        username: str | None = None,
    ) -> User:
        """Create a user (``user_id`` lowercased; the mail as given, without outer blanks)."""
        user = User(
            user_id=user_id.lower(),
            seq=len(self.by_id) + 1,
            mail=mail.strip() if mail is not None else None,
            status=status,
            username=username,
        )
        self.by_id[user.user_id] = user
        self._order.append(user.user_id)
        if mail is not None:
            self.mail_ids[mail_key(mail)] = user.user_id
        return user

    def update(self, user: User, **changes: Any) -> User:
        """Replace some fields of a user (its id, mail and place stay)."""
        updated = replace(user, **changes)
        self.by_id[user.user_id] = updated
        return updated


class AttemptBook:
    """Attempt histories per (integration, course, user), and their creation log."""

    def __init__(self) -> None:
        self.pairs: dict[AttemptKey, tuple[Attempt, ...]] = {}
        # The log: attempt number n is self._pairs_of[n - 1][self._index_of[n - 1]]. Parallel
        # lists and arrays of numbers, not a tuple per attempt: a million attempts would be a
        # million more objects for the garbage collector to walk.
        self._pairs_of: list[AttemptKey] = []
        self._index_of = array("q")
        # The indexes by course and by user are brought up to date by the listing that needs
        # them, not by each import (``_catch_up``): importing stays as cheap as it was.
        self._by_course: dict[str, array[int]] = {}
        self._by_user: dict[str, array[int]] = {}
        self._indexed = 0

    def __len__(self) -> int:
        return len(self._pairs_of)

    def put(self, key: AttemptKey, attempts: tuple[Attempt, ...], before: int) -> None:
        """Store a pair's attempts; those past ``before`` (its former count) are new ones.

        The attempt rules only append attempts or replace one in place, so an attempt keeps
        its position in the pair's tuple, and the log can point at it.
        """
        self.pairs[key] = attempts
        for index in range(before, len(attempts)):
            self._pairs_of.append(key)
            self._index_of.append(index)

    def _catch_up(self) -> None:
        for seq in range(self._indexed + 1, len(self._pairs_of) + 1):
            key = self._pairs_of[seq - 1]
            for index, value in ((self._by_course, key[1]), (self._by_user, key[2])):
                found = index.get(value)
                if found is None:
                    index[value] = array("q", (seq,))
                else:
                    found.append(seq)
        self._indexed = len(self._pairs_of)

    def entry(self, seq: int) -> tuple[AttemptKey, Attempt]:
        """The attempt numbered ``seq`` (1-based creation order) and its pair."""
        key = self._pairs_of[seq - 1]
        return key, self.pairs[key][self._index_of[seq - 1]]

    def seqs(
        self, after: int, *, courses: Iterable[str] | None = None, users: Iterable[str] | None = None
    ) -> Iterator[int]:
        """Attempt numbers above ``after``, ascending: all, or only those of some courses or users.

        With both ``courses`` and ``users``, the shorter index is read (the caller filters).
        """
        self._catch_up()
        lists: list[array[int]] | None = None
        for index, wanted in ((self._by_course, courses), (self._by_user, users)):
            if wanted is None:
                continue
            found = [index.get(value, _NONE) for value in set(wanted)]
            if lists is None or sum(map(len, found)) < sum(map(len, lists)):
                lists = found
        if lists is None:
            return iter(range(after + 1, len(self._pairs_of) + 1))
        return heapq.merge(*(_tail(seqs, after) for seqs in lists))


_NONE = array("q")


def _tail(seqs: array[int], after: int) -> Iterator[int]:
    # Read in place: a course's list may hold a million numbers, and a page needs 500 of them.
    return (seqs[index] for index in range(bisect_right(seqs, after), len(seqs)))


def attempt_dto(key: AttemptKey, attempt: Attempt, default_lang: str) -> dict[str, Any]:
    """The official ``CourseStatDTO`` of one attempt."""
    out: dict[str, Any] = {
        "_id": attempt.attempt_id,
        "courseId": key[1],
        "userId": key[2],
        # UNDOCUMENTED: an attempt whose statistics named no lang is in the course's defaultLang.
        "lang": attempt.lang or default_lang,
        "timeSpent": _number(attempt.time_spent),
        # UNDOCUMENTED: CourseStatDTO has integer progress and score; a fraction is truncated
        # (99.9 stays below 100, as the attempt is not completed).
        "progress": int(attempt.progress),
        "firstActivityAt": format_time(attempt.first_activity_at),
        "lastActivityAt": format_time(attempt.last_activity_at),
    }
    if attempt.score is not None:
        out["score"] = int(attempt.score)
    if attempt.completed_at is not None:
        out["completedAt"] = format_time(attempt.completed_at)
    return out


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value

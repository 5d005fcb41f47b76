"""Guards: a mass archive needs --allow-mass-archive (exit 6); an empty or unreadable source, or
an invalid course row, never archives anything."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.reliability.conftest import World

ARCHIVE = "archiveExternalCourses"


def synced_world(make_world: Callable[..., World], courses: int = 3) -> World:
    world = make_world()
    world.seed(courses=courses, learners=1)
    assert world.apply().code == 0
    world.synced()
    return world


def test_mass_archive_needs_the_flag(make_world: Callable[..., World]) -> None:
    world = synced_world(make_world, courses=8)
    for ext in ("C1", "C2", "C3", "C4", "C5", "C6"):
        del world.courses[ext]
        world.stats = {k: s for k, s in world.stats.items() if s.course != ext}
    world.write()
    refused = world.apply()
    assert refused.code == 6
    assert "mass-archive guard" in refused.err and "--allow-mass-archive" in refused.err
    assert world.items_sent(ARCHIVE) == 0
    allowed = world.apply("--allow-mass-archive")
    assert allowed.code == 0, allowed.err
    world.synced()
    world.check_platform()
    world.check_ledger()
    assert world.items_sent(ARCHIVE) == 6


def test_empty_unreadable_or_invalid_sources_archive_nothing(make_world: Callable[..., World]) -> None:
    world = synced_world(make_world)
    live = dict(world.courses)
    before = len(world.operations())

    world.courses.clear()  # the CSV keeps its header only
    world.write()
    empty = world.apply()
    assert empty.code == 0, empty.err

    (world.root / "courses.csv").unlink()
    unreadable = world.apply()
    assert unreadable.code == 1
    assert "courses.csv" in unreadable.err and "Traceback" not in unreadable.err

    world.courses.update(live)
    world.courses["C1"] = ""  # name is required: the row is invalid, its key still known
    world.write()
    invalid = world.apply()
    assert invalid.code == 3, invalid.err  # invalid rows beyond tolerate_invalid (0)

    assert len(world.operations()) == before  # nothing was sent, nothing archived
    world.courses["C1"] = "Course 1"
    world.check_platform()  # every course still live, with its last valid content

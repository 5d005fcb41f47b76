"""Write the demo's data files (courses.csv, stats.csv) beside this script; deterministic.

Run `python configs/demo/make_demo_data.py` after changing it; the output is committed.
The statistics hold a few deliberately invalid rows, which `tolerate_invalid` in demo.yaml allows.
"""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 360
LEARNERS = 80
STATS = 500

TOPICS = [
    ("Safety at work", "safety|compliance"),
    ("GDPR essentials", "compliance|privacy"),
    ("Negotiation basics", "sales|soft-skills"),
    ("Writing clear e-mails", "communication"),
    ("Excel pivot tables", "office|data"),
    ("Leading remote teams", "management|remote"),
    ("Customer empathy", "customer|soft-skills"),
    ("Onboarding: our products", "onboarding|product"),
    ("Cybersecurity awareness", "security|compliance"),
    ("Giving feedback", "management|communication"),
    ("Project planning", "management|project"),
    ("Time management", "productivity"),
    ("Intro to SQL", "data|technical"),
    ("Presentation skills", "communication|soft-skills"),
    ("Anti-bribery policy", "compliance"),
    ("Forklift certification", "safety|certification"),
    ("First aid refresher", "safety"),
    ("Diversity and inclusion", "culture"),
    ("Agile in practice", "project|technical"),
    ("Budgeting for managers", "management|finance"),
    ("Draft: new pricing", "sales"),
    ("Draft: warehouse layout", "safety"),
]
LEVELS = ["beginner", "intermediate", "advanced"]


def courses(rng: random.Random) -> list[dict[str, str]]:
    """About 20 published courses and two drafts (filtered out by demo.yaml)."""
    rows = []
    for i, (title, tags) in enumerate(TOPICS, start=1):
        rows.append(
            {
                "course_id": f"ACME-{i:03d}",
                "title": title,
                "lang": "fr" if i % 5 == 0 else "en",
                "tags": tags,
                "minutes": str(rng.choice([10, 15, 20, 30, 45, 60, 90])),
                "level": LEVELS[i % 3],
                "description": f"{title}: a short course by Acme Academy.",
                "status": "draft" if title.startswith("Draft") else "published",
            }
        )
    return rows


def stats(rng: random.Random, course_ids: list[str]) -> list[dict[str, str]]:
    """STATS rows over LEARNERS learners, dates as dd/mm/YYYY HH:MM in Europe/Paris."""
    rows: list[dict[str, str]] = []
    keys: set[tuple[str, str, str]] = set()
    spans: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    start = datetime(2025, 1, 6, 8, 0)
    while len(rows) < STATS:
        learner = len(rows) % LEARNERS if len(rows) < LEARNERS else rng.randrange(LEARNERS)
        email = f"learner{learner + 1:02d}@acme.example"
        course = rng.choice(course_ids)
        started = start + timedelta(minutes=rng.randrange(0, 200 * 24 * 60, 5))
        key = (course, email, f"{started:%d/%m/%Y %H:%M}")
        if key in keys:
            continue
        progress = rng.choice([0.1, 0.25, 0.5, 0.75, 0.9, 1, 1, 1])
        seconds = rng.randrange(60, 3 * 3600)
        finished = started + timedelta(seconds=seconds + rng.randrange(0, 3 * 24 * 3600))
        pair = spans.setdefault((course, email), [])
        if any(s <= finished and started <= f for s, f in pair):
            continue  # one learner's attempts at a course never overlap
        pair.append((started, finished))
        keys.add(key)
        done = progress == 1
        rows.append(
            {
                "course_id": course,
                "email": email.upper() if learner % 17 == 0 else email,  # mails are lower-cased
                "pct": f"{progress:g}",
                "score": str(rng.randrange(40, 101)) if done else "",
                "outcome": rng.choice(["passed", "passed", "passed", "failed"]) if done else "",
                "seconds": str(seconds),
                "started": key[2],
                "finished": f"{finished:%d/%m/%Y %H:%M}",
                "language": "fr" if learner % 4 == 0 else "en",
                "status": "deleted" if len(rows) % 97 == 13 else "active",
            }
        )
    # Deliberately invalid rows: each is reported with its line and never sent.
    rows[41]["pct"] = "1.5"  # progress 150 > 100
    rows[107]["email"] = ""  # no learner
    rows[233]["started"] = "31/02/2025 10:00"  # no such day
    rows[318]["outcome"] = "maybe"  # not in the result map
    rows[402]["seconds"] = "0"  # timeSpent must be at least 1 ms
    return rows


def write(name: str, rows: list[dict[str, str]], delimiter: str) -> None:
    """Write rows as CSV with a header."""
    with (HERE / name).open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    """Write courses.csv and stats.csv."""
    rng = random.Random(SEED)
    catalog = courses(rng)
    write("courses.csv", catalog, ",")
    published = [c["course_id"] for c in catalog if c["status"] == "published"]
    write("stats.csv", stats(rng, published), ";")


if __name__ == "__main__":
    main()

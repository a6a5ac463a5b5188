"""What an FTS5 search row adds to one durable SQLite commit (issue 15).

    .venv/bin/python benchmarks/search_index_cost.py

Commits of one 300-byte row (WAL, ``synchronous=FULL``, ``secure_delete=ON``, as the
store), without and with a row of 25 blind-index tokens in an FTS5 table like the
store's, alternating table variants; medians of 1,200 commits after 300 warm-up ones.
Why it exists: the store writes new records' search rows in a later transaction shared by
many records (``sqlite_search.PendingIndex``) instead of one per commit, because each
transaction that touches the FTS5 table writes several more pages to fsync. One run on
2026-12-02 (2-core VM, ext4): 147-158 µs per commit without, 201-225 µs with (the
store's table, ``columnsize=0`` and contentless alike).
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "no search row": None,
    "FTS5 (the store's)": "",
    "FTS5 columnsize=0": ", columnsize=0",
    "FTS5 contentless": ", content=''",
}


def run(options: str | None, commits: int = 1500, warm: int = 300) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "t.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA secure_delete=ON")
        db.execute("CREATE TABLE p (id TEXT PRIMARY KEY, body BLOB) WITHOUT ROWID")
        if options is not None:
            db.execute(
                "CREATE VIRTUAL TABLE s USING fts5(words, tokens, facets, "
                f"tokenize='unicode61 remove_diacritics 2'{options})"
            )
        times = []
        for i in range(commits):
            start = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO p VALUES (?, ?)", (os.urandom(16).hex(), os.urandom(300)))
            if options is not None:
                tokens = " ".join(os.urandom(8).hex() for _ in range(25))
                db.execute(
                    "INSERT INTO s (rowid, words, tokens, facets) VALUES (?, ?, ?, ?)",
                    (i + 1, "", tokens, "abcdef0123456789"),
                )
            db.execute("COMMIT")
            times.append(time.perf_counter() - start)
        db.close()
        return statistics.median(times[warm:]) * 1e6


def main() -> None:
    for _round in range(2):
        for name, options in VARIANTS.items():
            print(f"{name:<22} {run(options):6.0f} us per commit")


if __name__ == "__main__":
    main()

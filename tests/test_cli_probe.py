"""``attune`` used carelessly: an export pointed at something that is not a file, and
Ctrl-C in the middle of an export or a migration.

An export is written to a temporary file renamed into place, which replaces whatever the
path names: a symbolic link (``--out /dev/stdout``), a device (``/dev/null``, as root) or
a pipe was replaced by a file of records. Ctrl-C used to end the command with a traceback
and the work still pending on the blocking facade's loop: an export's temporary file, or
a migration's copy of every record, stayed behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attune.cli import main
from attune.memory import MemoryConfig, UnifiedMemory
from attune.memory.security import pipeline as security_pipeline

REPO = Path(__file__).resolve().parents[1]

#: Runs ``attune ARGS...`` with one function of the core replaced by one that, on its
#: first call, creates MARKER and waits until it is gone: the test then sends Ctrl-C while
#: the command is at that point (the event loop waiting on a worker thread).
_BLOCKED = """
import importlib, signal, sys, time
from pathlib import Path

signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
marker, module, owner, name = Path(sys.argv[1]), *sys.argv[2:5]
holder = importlib.import_module(module)
holder = getattr(holder, owner) if owner != "-" else holder
original = getattr(holder, name)
first = []

def blocked(*args, **kwargs):
    if not first:
        first.append(True)
        marker.write_text("blocked")
        while marker.exists():
            time.sleep(0.01)
    return original(*args, **kwargs)

setattr(holder, name, blocked)
from attune.cli import main
sys.exit(main(sys.argv[5:]))
"""


def _seed(storage: Path, count: int = 3) -> None:
    with UnifiedMemory("author", MemoryConfig(storage_dir=storage)) as memory:
        for number in range(count):
            memory.persist_pattern(f"Retry with backoff, take {number}", "practice")
    security_pipeline.close_shared()


def _interrupted(
    tmp_path: Path, target: tuple[str, str, str], args: list[str]
) -> subprocess.CompletedProcess[str]:
    """``attune ARGS`` sent SIGINT (Ctrl-C) while it is inside ``target``."""
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ATTUNE_REDIS_MOCK": "true"}
    env.pop("ATTUNE_DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-c", _BLOCKED, str(marker), *target, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the command never reached the point"
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        time.sleep(0.2)  # let the signal be handled before the blocked call goes on
        marker.unlink()
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_ctrl_c_during_an_export_leaves_no_file_and_no_traceback(tmp_path: Path) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    out.mkdir()
    _seed(store)
    done = _interrupted(
        tmp_path,
        ("attune.memory.export_file", "Spool", "write"),
        ["--storage-dir", str(store), "patterns", "export", "--out", str(out / "x.jsonl")],
    )
    assert done.returncode == 130, done.stderr
    assert "attune: interrupted" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == []  # no temporary file, no export


def test_ctrl_c_during_a_migration_leaves_no_copy_of_the_records(
    tmp_path: Path, postgres_url: str
) -> None:
    _seed(tmp_path)
    done = _interrupted(
        tmp_path,
        ("attune.memory.export_file", "-", "parse"),  # the load step reading the export
        ["--storage-dir", str(tmp_path), "migrate", "--to", postgres_url],
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (tmp_path / "migrate").iterdir()) == []


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_export_refuses_a_path_that_is_not_a_regular_file(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out /dev/stdout`` (a symbolic link) was replaced by a file of records; a device
    (``/dev/null``, as root) or a pipe too. Refused, and left as it was."""
    store = tmp_path / "store"
    _seed(store, 1)
    place = tmp_path / "place"
    place.mkdir()
    target = place / "out.jsonl"
    if kind == "symlink":
        (place / "real.jsonl").write_text("keep me\n")
        target.symlink_to(place / "real.jsonl")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    before = sorted((p.name, p.is_symlink(), p.is_file()) for p in place.iterdir())

    code = main(["--storage-dir", str(store), "patterns", "export", "--out", str(target)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "is not a regular file" in captured.err and "nothing was written" in captured.err
    assert sorted((p.name, p.is_symlink(), p.is_file()) for p in place.iterdir()) == before
    if kind == "symlink":
        assert (place / "real.jsonl").read_text() == "keep me\n"


def test_export_to_a_regular_file_there_replaces_it_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    _seed(store, 2)
    target = tmp_path / "out.jsonl"
    target.write_text("an older export\n")
    assert (
        main(["--storage-dir", str(store), "--json", "patterns", "export", "--out", str(target)])
        == 0
    )
    assert '"records": 2' in capsys.readouterr().out
    assert len(target.read_text().splitlines()) == 2

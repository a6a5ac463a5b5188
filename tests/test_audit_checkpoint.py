"""Signed checkpoints of the audit chain head (attune/memory/security/audit/checkpoint.py):
``attune audit checkpoint`` signs a verified head with a key derived from the master key;
``attune audit verify --checkpoint`` then finds a history rewritten or cut short up to it,
which the keyless chain alone cannot, and refuses a checkpoint altered or forged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attune.cli import main
from attune.errors import AuditLogError
from attune.memory.security.audit import AuditEvent, AuditLogger
from attune.memory.security.audit.checkpoint import open_checkpoint, sign_checkpoint
from attune.memory.security.audit.codec import GENESIS, _digest, _line
from attune.memory.security.keyring import KeyRing


def _log_events(path: Path, n: int) -> None:
    log = AuditLogger(path)
    try:
        for i in range(n):
            log.log(AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id=f"pat_{i}"))
    finally:
        log.close()


def rechain(lines: list[str]) -> list[str]:
    """The lines chained afresh from the genesis (what a writer rewriting history does)."""
    out, prev = [], GENESIS
    for seq, text in enumerate(lines, 1):
        record = json.loads(text)
        body = text[text.index(',"event":') + 1 : text.rindex(',"prev":"')]
        line = _line(record["ts"], seq, body, prev)
        prev = _digest(line)
        out.append(line.decode("ascii"))
    return out


def test_sign_and_open_round_trip_and_refuse_alterations() -> None:
    ring = KeyRing([b"k" * 32])
    document = sign_checkpoint(ring, 7, "a" * 64)
    assert open_checkpoint(json.loads(json.dumps(document)), ring) == (7, "a" * 64)
    for change in ({"seq": 6}, {"hash": "b" * 64}, {"time": "2000-01-01T00:00:00.000000Z"}):
        with pytest.raises(AuditLogError, match="signature does not match"):
            open_checkpoint({**document, **change}, ring)
    with pytest.raises(AuditLogError, match="not in the key ring"):
        open_checkpoint(document, KeyRing([b"o" * 32]))
    for bad in ([], {**document, "extra": 1}, {**document, "seq": -1}, {**document, "seq": True}):
        with pytest.raises(AuditLogError, match="not valid"):
            open_checkpoint(bad, ring)


def test_cli_checkpoint_finds_a_rewritten_or_shortened_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = ["--storage-dir", str(tmp_path)]
    log = tmp_path / "audit.jsonl"
    _log_events(log, 6)
    point = tmp_path / "checkpoint.json"
    assert main(["audit", "checkpoint", "--out", str(point), *storage]) == 0
    assert json.loads(point.read_text())["seq"] == 6
    _log_events(log, 2)  # the chain goes on: the checkpoint still holds
    capsys.readouterr()
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 0
    original = log.read_text().splitlines()

    # History rewritten: an edit, then every later hash recomputed. The chain alone passes.
    edited = [*original]
    edited[2] = edited[2].replace("pat_2", "pat_X")
    log.write_text("\n".join(rechain(edited)) + "\n")
    assert main(["audit", "verify", *storage]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 1
    assert "not the one the checkpoint signed" in capsys.readouterr().out

    # Cut short before the checkpoint: the chain alone passes, the checkpoint does not.
    log.write_text("\n".join(original[:4]) + "\n")
    assert main(["audit", "verify", *storage]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 1
    assert "ends before the checkpoint (seq 6)" in capsys.readouterr().out

    # A checkpoint moved back by hand is refused, not trusted.
    log.write_text("\n".join(original) + "\n")
    forged = {**json.loads(point.read_text()), "seq": 4}
    point.write_text(json.dumps(forged))
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 2  # an error
    assert "signature does not match" in capsys.readouterr().err


def test_no_checkpoint_of_a_broken_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    _log_events(log, 3)
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], lines[2]]) + "\n")
    point = tmp_path / "checkpoint.json"
    assert main(["audit", "checkpoint", "--out", str(point), "--storage-dir", str(tmp_path)]) == 1
    assert not point.exists()
    assert "no checkpoint" in capsys.readouterr().err


def test_a_checkpoint_signed_by_an_earlier_version_still_opens() -> None:
    """The MAC key's derivation (HKDF-SHA256 of the master key, fixed info) is part of the
    file format: this document was signed by the release before the ring derived it."""
    document = {
        "version": 1,
        "seq": 7,
        "hash": "a" * 64,
        "time": "2026-12-01T00:00:00.000000Z",
        "key_id": "k_d966040f8e6510e0",
        "mac": "ff458fe5fc137121a264a10b05dd591920cd5efc05d2957d5c6816d4c148df9e",
    }
    assert open_checkpoint(document, KeyRing([b"k" * 32])) == (7, "a" * 64)

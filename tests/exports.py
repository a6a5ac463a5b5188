"""Export files altered as an attacker or a bad disk would (shared by the export tests)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from attune.memory.export_file import MANIFEST_SUFFIX


def manifest_of(out: Path) -> Any:
    """The manifest written beside the export ``out``."""
    return json.loads(Path(str(out) + MANIFEST_SUFFIX).read_text())


def rewrite(out: Path, data: bytes) -> None:
    """Replace the export's JSONL with ``data``, its manifest's digest recomputed (so only
    the records themselves can tell)."""
    out.write_bytes(data)
    manifest = manifest_of(out)
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    Path(str(out) + MANIFEST_SUFFIX).write_text(json.dumps(manifest))


def tamper_ciphertext(out: Path) -> None:
    """Every encrypted record's ciphertext altered by one bit, the digest recomputed: the
    keys still open, the records do not."""
    lines = out.read_bytes().splitlines(keepends=True)
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record["encrypted"]:
            raw = bytearray(base64.b64decode(record["content"]))
            raw[0] ^= 0x01
            record["content"] = base64.b64encode(bytes(raw)).decode()
            lines[i] = json.dumps(record).encode() + b"\n"
    rewrite(out, b"".join(lines))

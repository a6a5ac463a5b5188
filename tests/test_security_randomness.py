"""Block-buffered OS randomness: never the same bytes twice, also across threads and fork."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from attune.memory.security import randomness


def test_tokens_are_fresh_and_of_the_asked_length() -> None:
    seen = set()
    for size in (0, 1, 16, 56, 1000, 5000):  # 5000 bypasses the block
        token = randomness.token_bytes(size)
        assert isinstance(token, bytes) and len(token) == size
        if size:
            assert token not in seen
            seen.add(token)
    with pytest.raises(ValueError, match="negative"):
        randomness.token_bytes(-1)


def test_a_block_is_handed_out_once_across_threads() -> None:
    drawn: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [randomness.token_bytes(16) for _ in range(2000)]
        with lock:
            drawn.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(drawn)) == len(drawn) == 16_000  # 8 x 2000 x 16 B spans many blocks


def test_uuid7_hex_is_a_time_ordered_version_7_uuid() -> None:
    before = time.time_ns() // 1_000_000
    values = [randomness.uuid7_hex() for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    assert len(set(values)) == 1000
    for value in values:
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and parsed.hex == value
        assert before <= int(value[:12], 16) <= after  # the first 48 bits: Unix ms
    later = randomness.uuid7_hex()
    time.sleep(0.002)
    assert randomness.uuid7_hex() > later  # a later millisecond sorts later


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_reuses_the_parents_bytes() -> None:
    randomness.token_bytes(16)  # the parent holds a partly used block now
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next 64 bytes, then leave at once
        try:
            os.write(write_fd, randomness.token_bytes(64))
        finally:
            os._exit(0)
    os.close(write_fd)
    child = b""
    while len(child) < 64:
        chunk = os.read(read_fd, 64 - len(child))
        if not chunk:
            break
        child += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    parent = randomness.token_bytes(64)
    assert len(child) == 64
    assert child != parent  # without the at-fork reset both would be the block's next bytes

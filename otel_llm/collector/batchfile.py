"""The queue's files on disk: one batch per file, its done-markers, and moving damaged files aside.

A batch file is ``<seq>-<spans>.batch``: a 16-byte header (magic, CRC-32 and length of the
payload) and the payload. It is written under a temporary name, fsynced and renamed, so a file
that was not completely written never carries a batch's name. ``queue.py`` decides what is
kept and handed out; this module only reads and writes the files.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

_logger = logging.getLogger("otel_llm.collector.queue")

MAGIC = b"OLQ1"
HEADER = struct.Struct(">4sIQ")  # magic, crc32 of the payload, payload length
BATCH = re.compile(r"^(\d{20})-(\d+)\.batch$")
"""A batch file's name: its sequence number and span count."""
DONE = re.compile(r"^(\d{20}-\d+\.batch)\.([a-z_]+)\.done$")
"""A done-marker's name: the batch file's name and the consumer that has it."""
TMP_SUFFIX = ".tmp"
CORRUPT_DIR = "corrupt"
_MARKER_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


def batch_path(directory: Path, seq: int, spans: int) -> Path:
    return directory / f"{seq:020d}-{spans}.batch"


def write(path: Path, payload: builtins.bytes) -> None:
    """Writes a batch file durably (the directory's fsync, for the rename, is the caller's)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    header = HEADER.pack(MAGIC, zlib.crc32(payload), len(payload))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(header + payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check(data: builtins.bytes) -> str | None:
    """What is wrong with a batch file's content, or None."""
    if len(data) < HEADER.size:
        return "shorter than its header"
    magic, crc, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        return "not a queue file"
    if length != len(data) - HEADER.size:
        return f"{len(data) - HEADER.size} payload bytes, header says {length}"
    if zlib.crc32(memoryview(data)[HEADER.size :]) != crc:
        return "CRC mismatch"
    return None


def marker(path: Path, consumer: str) -> Path:
    return path.with_name(f"{path.name}.{consumer}.done")


def mark_done(path: Path, consumer: str) -> None:
    """Leaves ``consumer``'s done-marker beside a batch: an empty file, not fsynced."""
    os.close(os.open(marker(path, consumer), _MARKER_FLAGS, 0o600))


def delete_markers(path: Path, consumers: Iterable[str]) -> None:
    for consumer in consumers:
        try:
            marker(path, consumer).unlink(missing_ok=True)
        except OSError as exc:  # left over: deleted on the next open
            _logger.warning("otel-llm collector: could not delete a marker of %s: %s", path, exc)


def delete(path: Path, done: Iterable[str]) -> None:
    """Deletes a batch every consumer has. Its markers first: a crash in between leaves a
    batch to be consumed again (allowed), never a marker that outlives its batch."""
    delete_markers(path, done)
    # No directory fsync: if the deletion is lost in a crash the batch is consumed again,
    # which at-least-once delivery allows.
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        _logger.warning("otel-llm collector: could not delete %s: %s", path, exc)


def move_aside(path: Path) -> str:
    """Moves a damaged batch file into ``corrupt/`` (kept for inspection); says where it went."""
    corrupt = path.parent / CORRUPT_DIR
    try:
        corrupt.mkdir(exist_ok=True)
        target = corrupt / path.name
        if target.exists():  # seqs restart when a queue empties: keep both files
            target = corrupt / f"{path.name}.{time.time_ns()}"
        path.rename(target)
        return f"moved to {target}"
    except OSError as exc:
        return f"could not be moved aside ({exc}); it is no longer read"

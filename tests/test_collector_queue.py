"""The collector's disk queue: durable before put returns, bounded, FIFO, safe across threads,
and recovering exactly what a killed process acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from otel_llm.collector.queue import (
    MEMO_BYTES_PER_PAYLOAD_BYTE,
    MEMO_BYTES_PER_SPAN,
    DiskQueue,
    QueueClosed,
    QueueFull,
    QueueInUse,
)
from otel_llm.collector.telemetry import CollectorMetrics

ROOT = Path(__file__).parent.parent


def _files(directory: Path, suffix: str) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(suffix))


def test_batches_survive_a_reopen_oldest_first(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=10_000) as queue:
        for index in range(3):
            queue.put(f"batch-{index}".encode(), spans=index + 1)
        assert (queue.batches, queue.spans, queue.bytes) == (3, 6, 21)
    with DiskQueue(tmp_path, max_bytes=10_000) as queue:
        assert (queue.batches, queue.spans, queue.bytes) == (3, 6, 21)
        items = [queue.get(timeout=0) for _ in range(3)]
        assert [(i.payload, i.spans) for i in items if i] == [
            (b"batch-0", 1),
            (b"batch-1", 2),
            (b"batch-2", 3),
        ]
        assert queue.get(timeout=0) is None  # all three are in flight now
        queue.put(b"batch-3", spans=1)  # numbered after the recovered ones
        item = queue.get(timeout=0)
        assert item is not None
        assert item.payload == b"batch-3"


def test_ack_deletes_release_gives_back_and_in_flight_is_recovered(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=10_000) as queue:
        queue.put(b"a", spans=1)
        queue.put(b"b", spans=1)
        first = queue.get(timeout=0)
        assert first is not None
        queue.release(first)
        again = queue.get(timeout=0)
        assert again is not None
        assert again.payload == b"a"  # released: oldest again
        queue.ack(again)
        queue.ack(again)  # a second ack is ignored
        assert (queue.batches, queue.bytes) == (1, 1)
        in_flight = queue.get(timeout=0)
        assert in_flight is not None
        assert in_flight.payload == b"b"
        # closed with "b" in flight (a send under way when the process stopped)
    assert len(_files(tmp_path, ".batch")) == 1
    with DiskQueue(tmp_path, max_bytes=10_000) as queue:
        item = queue.get(timeout=0)
        assert item is not None
        assert item.payload == b"b"  # at-least-once: sent again


def test_the_bound_refuses_what_does_not_fit_and_frees_on_ack(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=1000) as queue:
        queue.put(b"x" * 600, spans=1)
        with pytest.raises(QueueFull):
            queue.put(b"y" * 500, spans=1)
        assert (queue.batches, queue.bytes) == (1, 600)
        assert len(_files(tmp_path, ".batch")) == 1
        assert not _files(tmp_path, ".tmp")
        queue.put(b"z" * 400, spans=1)  # exactly at the bound is fine
        item = queue.get(timeout=0)
        assert item is not None
        queue.ack(item)
        queue.put(b"y" * 500, spans=1)
        assert queue.bytes == 900


def test_closed_queue_refuses_puts_and_wakes_getters(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, max_bytes=1000)
    got: list[object] = []
    getter = threading.Thread(target=lambda: got.append(queue.get(timeout=None)))
    getter.start()
    time.sleep(0.1)
    queue.close()
    getter.join(2)
    assert not getter.is_alive()
    assert got == [None]
    with pytest.raises(QueueClosed) as refused:
        queue.put(b"late", spans=1)
    assert isinstance(refused.value, QueueFull)  # a retryable refusal for naive callers
    queue.close()  # twice is fine


def test_one_directory_one_queue(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=1000):
        with pytest.raises(QueueInUse):
            DiskQueue(tmp_path, max_bytes=1000)
    DiskQueue(tmp_path, max_bytes=1000).close()  # free again once closed


def test_half_written_and_damaged_files(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=10_000) as queue:
        for payload in (b"good-1", b"bitrot", b"good-2"):
            queue.put(payload, spans=4)
    batches = _files(tmp_path, ".batch")
    # A put that was killed before its rename: never acknowledged, must not come back.
    (tmp_path / "00000000000000000099-7.batch.tmp").write_bytes(b"half a batch")
    # A file truncated below its header (found on open) and one whose bytes changed (on get).
    (tmp_path / "00000000000000000050-3.batch").write_bytes(b"OLQ")
    damaged = tmp_path / batches[1]
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (tmp_path / "notes.txt").write_text("not ours")

    with DiskQueue(tmp_path, max_bytes=10_000) as queue:
        assert not _files(tmp_path, ".tmp")
        assert queue.take_corrupt() == 3  # the truncated one, found on open
        payloads = []
        while (item := queue.get(timeout=0)) is not None:
            payloads.append(item.payload)
            queue.ack(item)
        assert payloads == [b"good-1", b"good-2"]
        assert queue.take_corrupt() == 4  # the CRC mismatch, found on get
        assert queue.take_corrupt() == 0
        assert queue.corrupt_files == 2
        assert (queue.batches, queue.bytes, queue.spans) == (0, 0, 0)
    assert sorted(os.listdir(tmp_path / "corrupt")) == sorted(
        ["00000000000000000050-3.batch", batches[1]]
    )  # moved aside, kept for inspection
    assert (tmp_path / "notes.txt").exists()


def test_concurrent_puts_and_gets_deliver_each_batch_once(tmp_path: Path) -> None:
    producers, per_producer = 6, 60
    delivered: list[bytes] = []
    lock = threading.Lock()
    with DiskQueue(tmp_path, max_bytes=10_000_000) as queue:

        def produce(p: int) -> None:
            for i in range(per_producer):
                queue.put(f"{p}:{i}".encode() * 50, spans=1)

        def consume() -> None:
            while (item := queue.get(timeout=1.0)) is not None:
                with lock:
                    delivered.append(item.payload)
                if len(item.payload) % 2:  # some go back once, as after a failed send
                    queue.release(item)
                    item = queue.get(timeout=1.0)
                    if item is None:
                        return
                    with lock:
                        delivered.append(item.payload)
                queue.ack(item)

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        threads += [threading.Thread(target=consume) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        assert (queue.batches, queue.bytes, queue.spans) == (0, 0, 0)
    expected = {f"{p}:{i}".encode() * 50 for p in range(producers) for i in range(per_producer)}
    assert set(delivered) == expected
    assert not _files(tmp_path, ".batch")


_WRITER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from otel_llm.collector.queue import DiskQueue

    queue = DiskQueue(Path(sys.argv[1]), max_bytes=1 << 30)
    lock = threading.Lock()

    def write(worker):
        for i in range(100_000):
            name = f"{worker}-{i}"
            # Sizes vary so some writes are mid-way when the kill lands.
            payload = (name + ":").encode() + bytes([i % 251]) * (1000 + (i * 7919) % 150_000)
            queue.put(payload, spans=i % 512 + 1)
            with lock:  # printed only once put returned: this batch was acknowledged
                print(name, flush=True)

    for worker in range(4):
        threading.Thread(target=write, args=(worker,), daemon=True).start()
    threading.Event().wait()
    """
)


def _expected_payload(name: str) -> tuple[bytes, int]:
    i = int(name.split("-")[1])
    payload = (name + ":").encode() + bytes([i % 251]) * (1000 + (i * 7919) % 150_000)
    return payload, i % 512 + 1


@pytest.mark.parametrize("kill_after", [37, 150])
def test_sigkill_during_puts_loses_no_acknowledged_batch(tmp_path: Path, kill_after: int) -> None:
    directory = tmp_path / "queue"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    acknowledged: list[str] = []
    try:
        assert writer.stdout is not None
        while len(acknowledged) < kill_after:
            line = writer.stdout.readline()
            assert line, "the writer died on its own"
            acknowledged.append(line.strip())
        writer.send_signal(signal.SIGKILL)
        # Lines printed between our last read and the kill were acknowledged too.
        acknowledged += [line.strip() for line in writer.stdout.read().splitlines()]
    finally:
        writer.kill()
        writer.wait(10)
    assert writer.returncode == -signal.SIGKILL

    with DiskQueue(directory, max_bytes=1 << 30) as queue:
        recovered = {}
        while (item := queue.get(timeout=0)) is not None:
            name = item.payload.split(b":", 1)[0].decode()
            assert (item.payload, item.spans) == _expected_payload(name)  # intact, not half
            recovered[name] = item
        assert queue.take_corrupt() == 0
        assert set(acknowledged) <= set(recovered)
        # Anything beyond was completely written just before the kill; at most one per thread.
        assert len(set(recovered) - set(acknowledged)) <= 4
    assert not _files(directory, ".tmp")


def test_metrics_gauges_read_the_live_queue(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    assert registry.get_sample_value("otel_llm_collector_queue_batches") == 0
    with DiskQueue(tmp_path, max_bytes=5000) as queue:
        metrics.watch_queue(queue)
        queue.put(b"x" * 300, spans=2)
        queue.put(b"y" * 200, spans=2)
        assert registry.get_sample_value("otel_llm_collector_queue_batches") == 2
        assert registry.get_sample_value("otel_llm_collector_queue_bytes") == 500
        assert registry.get_sample_value("otel_llm_collector_queue_capacity_bytes") == 5000
        item = queue.get(timeout=0)
        assert item is not None
        queue.ack(item)
        assert registry.get_sample_value("otel_llm_collector_queue_bytes") == 200


# --- two consumers: the forwarder and the call log read every batch ------------------------------

BOTH = ("upstream", "calls")


def test_a_batch_is_deleted_only_once_every_consumer_acknowledged_it(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=100, consumers=BOTH) as queue:
        queue.put(b"a" * 60, spans=2)
        forwarded = queue.get(timeout=0)
        assert forwarded is not None
        assert forwarded.consumer == "upstream"
        queue.ack(forwarded)
        assert queue.get(timeout=0) is None  # the forwarder is done with it ...
        assert (queue.batches, queue.bytes, queue.waiting("calls")) == (1, 60, 1)
        with pytest.raises(QueueFull):  # ... but it still counts against the bound
            queue.put(b"b" * 60, spans=1)
        assert len(_files(tmp_path, ".batch")) == 1
        assert len(_files(tmp_path, ".upstream.done")) == 1
        logged = queue.get(timeout=0, consumer="calls")
        assert logged is not None
        assert logged.payload == b"a" * 60
        queue.ack(logged)
        assert (queue.batches, queue.bytes, queue.spans) == (0, 0, 0)
        # The batch and its marker are gone together.
        assert not _files(tmp_path, ".batch")
        assert not _files(tmp_path, ".done")
        queue.put(b"b" * 60, spans=1)  # room again


def test_each_consumer_recovers_what_it_had_not_acknowledged(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH) as queue:
        for payload in (b"one", b"two", b"three"):
            queue.put(payload, spans=1)
        for _ in range(2):  # the forwarder sent two, the call log stored one: then SIGKILL
            item = queue.get(timeout=0)
            assert item is not None
            queue.ack(item)
        logged = queue.get(timeout=0, consumer="calls")
        assert logged is not None
        queue.ack(logged)
        in_flight = queue.get(timeout=0, consumer="calls")  # taken, never acknowledged
        assert in_flight is not None
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH) as queue:
        assert queue.batches == 3 - 1  # "one": acknowledged by both, deleted
        upstream = [queue.get(timeout=0) for _ in range(2)]
        assert [item.payload for item in upstream if item] == [b"three"]
        calls = [queue.get(timeout=0, consumer="calls") for _ in range(3)]
        assert [item.payload for item in calls if item] == [b"two", b"three"]


def test_markers_without_their_batch_are_deleted_before_a_seq_is_reused(tmp_path: Path) -> None:
    # A crash between deleting a batch and its marker must not mark the next batch of that seq
    # done: the queue is empty, so seqs start again from 1.
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH) as queue:
        queue.put(b"old", spans=1)
    (batch,) = _files(tmp_path, ".batch")
    (tmp_path / batch).unlink()
    (tmp_path / f"{batch}.calls.done").touch()
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH) as queue:
        assert not _files(tmp_path, ".done")
        queue.put(b"new", spans=1)
        assert _files(tmp_path, ".batch") == [batch]  # the same name again
        item = queue.get(timeout=0, consumer="calls")
        assert item is not None
        assert item.payload == b"new"


def test_a_batch_every_consumer_of_this_run_had_is_deleted_on_open(tmp_path: Path) -> None:
    # Written with the call log on and forwarded; restarted with the call log off: nobody is
    # left to read it.
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH) as queue:
        queue.put(b"x", spans=1)
        item = queue.get(timeout=0)
        assert item is not None
        queue.ack(item)
    with DiskQueue(tmp_path, max_bytes=10_000) as queue:
        assert queue.batches == 0
        assert queue.get(timeout=0) is None
    assert not _files(tmp_path, ".batch")
    assert not _files(tmp_path, ".done")


def test_a_damaged_batch_is_dropped_for_every_consumer(tmp_path: Path) -> None:
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH) as queue:
        queue.put(b"bitrot", spans=5)
        queue.put(b"good", spans=1)
        (damaged, _) = (tmp_path / name for name in _files(tmp_path, ".batch"))
        data = bytearray(damaged.read_bytes())
        data[-1] ^= 0xFF
        damaged.write_bytes(bytes(data))
        item = queue.get(timeout=0, consumer="calls")
        assert item is not None
        assert item.payload == b"good"
        assert queue.take_corrupt() == 5  # counted once
        item = queue.get(timeout=0)
        assert item is not None
        assert item.payload == b"good"
        assert queue.take_corrupt() == 0
        assert queue.batches == 1


def test_consumer_names_are_checked(tmp_path: Path) -> None:
    for consumers in ((), ("calls", "calls"), ("../x",)):
        with pytest.raises(ValueError, match="consumer"):
            DiskQueue(tmp_path, max_bytes=100, consumers=consumers)
    with DiskQueue(tmp_path, max_bytes=100) as queue, pytest.raises(ValueError, match="calls"):
        queue.get(timeout=0, consumer="calls")


def test_a_memo_goes_to_its_consumer_once_within_its_bound_and_never_to_disk(
    tmp_path: Path,
) -> None:
    with DiskQueue(
        tmp_path,
        max_bytes=10_000,
        consumers=BOTH,
        memo_consumer="calls",
        memo_max_bytes=MEMO_BYTES_PER_SPAN + 10,  # one memo of one span
    ) as queue:
        queue.put(b"a" * 6, spans=1, memo=["calls of a"])
        queue.put(b"b" * 6, spans=1, memo=["calls of b"])  # over the bound: not kept
        forwarded = queue.get(timeout=0)
        assert forwarded is not None
        assert forwarded.memo is None  # not the memo consumer
        first = queue.get(timeout=0, consumer="calls")
        second = queue.get(timeout=0, consumer="calls")
        assert first is not None
        assert second is not None
        assert (first.memo, second.memo) == (["calls of a"], None)
        queue.release(first)
        again = queue.get(timeout=0, consumer="calls")
        assert again is not None
        assert again.memo is None  # taken once: derived from the payload from now on
        queue.put(b"c" * 6, spans=1, memo=["calls of c"])  # room again in the bound
        queue.ack(second)
        third = queue.get(timeout=0, consumer="calls")
        assert third is not None
        assert third.memo == ["calls of c"]
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH, memo_consumer="calls") as queue:
        items = [queue.get(timeout=0, consumer="calls") for _ in range(3)]
        # "a" and "c" (never acknowledged by the call log), without their memos.
        assert [(item.payload, item.memo) for item in items if item] == [
            (b"a" * 6, None),
            (b"c" * 6, None),
        ]


def test_a_memo_is_weighed_by_its_spans_too(tmp_path: Path) -> None:
    """Found in review: a memo holds spans of the parsed request, which keep the whole request
    alive (~170 bytes a span however small its encoding), but was weighed by its payload: 3.9 MB
    of 2,000,000 empty spans kept 333 MB, and 32 MB of them 2.7 GB."""
    with DiskQueue(
        tmp_path,
        max_bytes=10_000,
        consumers=BOTH,
        memo_consumer="calls",
        memo_max_bytes=MEMO_BYTES_PER_SPAN * 10,
    ) as queue:
        queue.put(b"tiny", spans=11, memo=["calls of many spans"])  # over the bound: not kept
        queue.put(b"tiny", spans=10, memo=["calls of ten"])
        items = [queue.get(timeout=0, consumer="calls") for _ in range(2)]
        assert [item.memo for item in items if item] == [None, ["calls of ten"]]


def test_a_memo_weighs_what_its_caller_says_else_its_whole_parse(tmp_path: Path) -> None:
    """Found in review: a request parses to ~3.5x its payload, and to far more when made of empty
    span events; weighed by its payload, 10 MB of memos kept 410 MB."""
    with DiskQueue(
        tmp_path,
        max_bytes=100_000,
        consumers=BOTH,
        memo_consumer="calls",
        memo_max_bytes=MEMO_BYTES_PER_PAYLOAD_BYTE * 1000 + 10,
    ) as queue:
        queue.put(b"x" * 1002, spans=1, memo=["over the bound"])
        queue.put(b"x" * 1000, spans=1, memo=["its parse fits"])
        queue.put(b"x" * 5000, spans=1, memo=["copies of 10 bytes"], memo_weight=10)
        items = [queue.get(timeout=0, consumer="calls") for _ in range(3)]
        assert [item.memo for item in items if item] == [
            None,
            ["its parse fits"],
            ["copies of 10 bytes"],
        ]


def test_kept_payloads_are_handed_out_without_reading_their_files(tmp_path: Path) -> None:
    """With ``keep_bytes`` a batch put is handed to every consumer from memory while the
    memory kept stays under the bound; the file is still written (the durable record) and is
    what a restarted queue reads."""
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH, keep_bytes=10) as queue:
        queue.put(b"kept-1", spans=1)
        queue.put(b"on-disk", spans=2)  # 6 + 7 bytes > 10: not kept
        for name in _files(tmp_path, ".batch"):
            data = bytearray((tmp_path / name).read_bytes())
            data[-1] ^= 0xFF  # damaged on disk: a CRC mismatch when read
            (tmp_path / name).write_bytes(bytes(data))
        kept = queue.get(timeout=0, consumer="calls")
        assert kept is not None
        assert kept.payload == b"kept-1"  # from memory
        assert queue.get(timeout=0, consumer="calls") is None  # the other one, read: damaged
        assert queue.take_corrupt() == 2  # the one read from its file
        again = queue.get(timeout=0)
        assert again is not None
        assert again.payload == b"kept-1"
        queue.ack(kept)
        queue.ack(again)
        # Deleted once both consumers have it, and its memory given back: the next fits.
        queue.put(b"kept-2", spans=1)
        item = queue.get(timeout=0)
        assert item is not None
        assert item.payload == b"kept-2"
        queue.release(item)
    with DiskQueue(tmp_path, max_bytes=10_000, consumers=BOTH, keep_bytes=10) as queue:
        item = queue.get(timeout=0)  # after a restart: read from its file (it was released)
        assert item is not None
        assert item.payload == b"kept-2"

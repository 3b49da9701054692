#!/usr/bin/env python3
"""storage: `loyalty serve` on a disk that fills up pauses ingestion, and resumes it by
itself once the disk has room, every event applied exactly once.

The data directory sits on a small tmpfs. `loyalty kafka-mock` runs the topics (one
partition, so the engine sees the file's order) and kcat produces a `loyalty produce`
stream into it at a steady rate while the engine consumes. Mid-stream a ballast file
fills the tmpfs: /healthz must turn 503 and say the disk is full, and /v1/progress
must stop moving while kcat goes on producing. Then the ballast goes: /healthz must
turn 200 again without a restart, the engine must take the rest of the stream, and
in the end its answers, event outcomes and counts must equal those of `loyalty
ingest` of the same file into another directory, `loyalty replay verify` must pass,
no event may be applied twice and every dead letter must be on the DLQ.

Mounting needs root (CAP_SYS_ADMIN): without it the test exits 77, which CTest shows
as skipped, and prints why.
"""

import argparse
import errno
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "real_kafka"))
import rk  # noqa: E402

SKIP = 77
TOPIC = "loyalty.events"
TMPFS_MIB = 160
# RocksDB preallocates each WAL file (fallocate) at its first write, by 1.1 times the
# memtable size (64 MiB): with that much room the whole test would write into space
# reserved before the disk filled. So the engine starts with less free than that
# (PREALLOC_DEFEAT_MIB), its WAL goes unreserved, and the room is given back before
# the ballast fills the disk. RocksDB resumes only once 64 MiB are free again, which
# TMPFS_MIB leaves after the ballast is gone.
PREALLOC_DEFEAT_MIB = 24


class MockBroker(rk.Broker):
    """rk.Broker's kcat helpers (end offsets, consume) against `loyalty kafka-mock`."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.dir = None


def free_mib(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / (1 << 20)


def fill(path, leave_mib=0.0):
    """Writes `path` until the filesystem has `leave_mib` free (0: until it refuses)."""
    chunk = b"\0" * (1 << 20)
    written = 0
    with open(path, "wb") as out:
        for size in (1 << 20, 4096):
            piece = chunk[:size]
            while free_mib(os.path.dirname(path)) - size / (1 << 20) >= leave_mib:
                try:
                    out.write(piece)
                    out.flush()
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                written += size
    return written


def mount_tmpfs(mnt):
    """None, or why a tmpfs cannot be mounted here."""
    if os.geteuid() != 0:
        return "not root: mounting a tmpfs needs CAP_SYS_ADMIN"
    os.makedirs(mnt, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        return f"mount -t tmpfs failed ({r.returncode}): {r.stdout.strip()}"
    return None


def unmount(mnt):
    for args in (["umount", mnt], ["umount", "-l", mnt]):
        if subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return


def wait_health(srv, want, timeout):
    """Polls /healthz until it answers `want`: (seconds waited, last answer)."""
    t0 = time.time()
    while True:
        code, body = srv.get("/healthz", timeout=10)
        if code == want:
            return time.time() - t0, (code, body)
        if time.time() - t0 > timeout:
            raise RuntimeError(f"/healthz did not answer {want} within {timeout}s; last "
                               f"{code} {body}\nserve stderr tail:\n{srv.stderr_text()[-3000:]}")
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--loyalty", required=True)
    ap.add_argument("--work", required=True, help="scratch directory (emptied first)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("LOYALTY_DISK_SEED", "0")))
    a = ap.parse_args()
    a.seed = a.seed or int(time.time()) % 100000 + 1
    random.seed(a.seed)
    rk.log(f"seed {a.seed} (rerun with --seed {a.seed})")
    mnt = os.path.join(a.work, "tmpfs")
    if os.path.ismount(mnt):
        unmount(mnt)
    if os.path.exists(a.work):
        shutil.rmtree(a.work)
    os.makedirs(a.work)

    why = mount_tmpfs(mnt)
    if why is not None:
        print(f"storage disk-full test SKIPPED: {why}", flush=True)
        sys.exit(SKIP)
    try:
        run(a, mnt)
    finally:
        rk._kill_children()
        unmount(mnt)


def run(a, mnt):
    f = rk.Failures()
    stream = rk.Stream(a.loyalty, os.path.join(a.work, "stream.jsonl"), 6000, 300, a.seed)
    ref_dir = os.path.join(a.work, "ref")
    ref = rk.ingest_reference(a.loyalty, ref_dir, stream.path)
    rk.log(f"{len(stream.lines)} lines; reference ingest: {ref}")

    mock_err = open(os.path.join(a.work, "kafka-mock.err"), "wb")
    args = [a.loyalty, "kafka-mock"]
    for topic in (TOPIC, "loyalty.events.dlq", "loyalty.outcomes", "loyalty.signals"):
        args += ["--topic", topic, "--partitions", "1"]
    mock = rk.spawn(args, stdout=subprocess.PIPE, stderr=mock_err, text=True)
    bootstrap = mock.stdout.readline().strip()
    if not bootstrap:
        raise RuntimeError("loyalty kafka-mock printed no bootstrap address")
    broker = MockBroker(bootstrap)

    pre_ballast = os.path.join(mnt, "prealloc-defeat")
    fill(pre_ballast, leave_mib=PREALLOC_DEFEAT_MIB)
    data_dir = os.path.join(mnt, "data")
    srv = rk.Serve(a.loyalty, data_dir, a.work, bootstrap, TOPIC, "disk-full", "serve")
    producer = rk.Producer(bootstrap, TOPIC, stream.keyed(), rate=300, workdir=a.work)

    # Some of the stream in, then the disk fills.
    deadline = time.time() + 60
    while srv.progress()[0].get((TOPIC, 0), 0) < len(stream.lines) // 8:
        if time.time() > deadline:
            raise RuntimeError(f"serve took too little in 60s: {srv.progress()}")
        time.sleep(0.2)
    os.remove(pre_ballast)
    ballast = os.path.join(mnt, "ballast")
    filled = fill(ballast)
    at_fill = srv.progress()
    rk.log(f"ballast of {filled >> 20} MiB fills the tmpfs ({free_mib(mnt):.2f} MiB free); "
           f"serve at offset {at_fill[0].get((TOPIC, 0))}, log length {at_fill[1]}")

    waited, (code, body) = wait_health(srv, 503, timeout=30)
    rk.log(f"/healthz 503 after {waited:.1f}s: {body}")
    text = str(body)
    f.check("ingestion paused" in text and "No space left on device" in text,
            f"/healthz while the disk is full does not say ingestion paused on a full disk: "
            f"{body}")
    paused = srv.progress()
    sent_before = producer.sent
    time.sleep(4)
    still = srv.progress()
    f.equal(still, paused, "/v1/progress (offsets, log length) while the disk is full")
    f.check(producer.sent > sent_before,
            "kcat produced nothing while the disk was full: the pause was not tested")
    code, body = srv.get("/healthz")
    f.check(code == 503, f"/healthz answered {code} while the disk was still full: {body}")
    rk.log(f"progress held at {still} for 4s while kcat produced "
           f"{producer.sent - sent_before} more lines")

    os.remove(ballast)
    rk.log(f"ballast removed ({free_mib(mnt):.0f} MiB free)")
    waited, _ = wait_health(srv, 200, timeout=60)
    rk.log(f"/healthz 200 again {waited:.1f}s after the ballast went")
    f.check("ingestion resumed" in srv.stderr_text(), "serve's log does not say it resumed")

    producer.wait()
    ends = broker.end_offsets(TOPIC)
    f.equal(ends, {0: len(stream.lines)}, "messages on the topic after kcat -P")
    srv.wait_taken(TOPIC, ends, timeout=120, what="after the disk had room again")
    code, body = srv.get("/healthz")
    f.check(code == 200, f"/healthz at the end: {code} {body}")
    rk.log("serve took the whole stream")
    # The outbox, which stores its cursor in the same store, went on too.
    published, cursor, length = srv.wait_published(timeout=60)
    f.check(published, f"the outbox cursor stays at {cursor}, the log is {length} records long")

    ref_srv = rk.Serve(a.loyalty, ref_dir, a.work, name="ref-serve")
    customers = sorted(stream.customers)
    f.equal(rk.answers(srv, customers, stream.as_of), rk.answers(ref_srv, customers, stream.as_of),
            f"balance/tier/churn of {len(customers)} customers at {stream.as_of}")
    got = rk.event_states(srv, stream.event_ids)
    want = rk.event_states(ref_srv, stream.event_ids)
    f.equal({e: s[:3] for e, s in got.items()}, {e: s[:3] for e, s in want.items()},
            f"outcomes of {len(got)} event ids (state, reasons)")
    accepted = srv.metric('loyalty_events_total{outcome="accepted"}')
    rejected = srv.metric('loyalty_events_total{outcome="rejected"}')
    dead = srv.metric('loyalty_events_total{outcome="dead_letter"}')
    f.equal({"appended": int(accepted + rejected), "dead_lettered": int(dead)},
            {k: ref[k] for k in ("appended", "dead_lettered")},
            "events appended and dead-lettered (serve's /metrics vs ingest's summary)")
    f.check(srv.stop() == 0, "serve did not exit 0 on SIGTERM")
    ref_srv.stop()
    rk.check_exactly_once(f, a, data_dir, ref_dir, ref, stream, "full disk")
    rk.check_dlq(f, broker, TOPIC, ref, stream, "full disk")
    f.finish("storage: disk full")


if __name__ == "__main__":
    main()

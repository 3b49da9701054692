#!/usr/bin/env python3
"""real-kafka: SIGKILL `loyalty serve` at random moments while kcat produces.

A producer (kcat, key = customer_id, idempotent) feeds a multi-partition topic at a
steady rate. Meanwhile `loyalty serve --brokers` is started on one data directory
and killed with SIGKILL at random moments, cycle after cycle (some before it joined
the group, some mid-stream), then left to finish. At the end every input is in the
log exactly once: replay verify passes and counts as many events and dead letters as
`loyalty ingest` of the same file, no event id has entries at two records, every
event id that ingest applied is there, and the order-independent answers equal the
reference's.
"""

import os
import random
import time

import rk


def main():
    a = rk.parse_args(__doc__)
    f = rk.Failures()
    broker = rk.Broker(a)
    events = max(1000, int(6000 * a.scale))
    cycles = max(3, int(round(7 * a.scale)))
    stream = rk.Stream(a.loyalty, os.path.join(a.work, "stream.jsonl"), events, 400, a.seed)
    ref_dir = os.path.join(a.work, "ref")
    ref = rk.ingest_reference(a.loyalty, ref_dir, stream.path)
    rk.log(f"{len(stream.lines)} lines; reference ingest: appended {ref['appended']}, "
           f"duplicate {ref['duplicate']}, dead-lettered {ref['dead_lettered']}")

    topic = f"rk.crash.{a.seed}.{int(time.time())}"
    broker.create_topic(topic, 4)
    kafka_dir = os.path.join(a.work, "kafka")
    # A backlog first (so that early kills land in large batches), then a steady stream
    # for about 5 s per cycle while serve is killed again and again.
    backlog = len(stream.lines) // 4
    rk.produce(a.bootstrap, topic, stream.keyed(0, backlog), workdir=a.work)
    rate = max(50, (len(stream.lines) - backlog) // (5 * cycles))
    producer = rk.Producer(a.bootstrap, topic, stream.keyed(backlog), rate=rate,
                           workdir=a.work)
    rk.log(f"{backlog} messages produced to {topic} (4 partitions), the other "
           f"{len(stream.lines) - backlog} follow at {rate}/s; {cycles} kill cycles")

    kills = 0
    for cycle in range(cycles):
        srv = rk.Serve(a.loyalty, kafka_dir, a.work, a.bootstrap, topic, "rk-crash",
                       f"serve-{cycle}")
        _, before = srv.progress()
        if cycle % 2 == 0:
            # Somewhere between start-up (no assignment yet) and a few batches in.
            delay = random.uniform(0.2, 4.0)
            time.sleep(delay)
            moment = f"{delay:.2f}s after start"
        else:
            # Once it takes messages again (group joined), a little later.
            deadline = time.time() + 20
            while time.time() < deadline and srv.proc.poll() is None:
                if srv.progress()[1] > before:
                    break
                if not producer.running() and time.time() > deadline - 15:
                    break  # nothing more is coming: kill it wherever it is
                time.sleep(0.05)
            delay = random.uniform(0.0, 0.8)
            time.sleep(delay)
            moment = f"{delay:.2f}s after it took its first batch"
        f.check(srv.proc.poll() is None,
                f"serve-{cycle} exited by itself ({srv.proc.returncode}):\n"
                f"{srv.stderr_text()[-2000:]}")
        _, at = srv.progress()
        srv.kill9()
        kills += 1
        rk.log(f"cycle {cycle}: SIGKILL {moment}; log length {before} -> {at}; "
               f"producer sent {producer.sent}")

    producer.wait(timeout=300)
    ends = broker.end_offsets(topic)
    f.equal(sum(ends.values()), len(stream.lines), "messages on the topic")
    f.check(producer.sent == len(stream.lines) - backlog, "the producer did not send all")
    srv = rk.Serve(a.loyalty, kafka_dir, a.work, a.bootstrap, topic, "rk-crash", "serve-final")
    t0 = time.time()
    srv.wait_taken(topic, ends, timeout=180, what=f"after {kills} SIGKILLs")
    rk.log(f"the last serve took the rest in {time.time() - t0:.1f}s; ends {ends}")

    rk.finish_against_reference(f, a, srv, broker, topic, kafka_dir, ref_dir, ref, stream,
                                "crash loop")
    f.finish("real-kafka crash loop")


if __name__ == "__main__":
    main()

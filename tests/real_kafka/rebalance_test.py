#!/usr/bin/env python3
"""real-kafka: partitions added mid-stream, the consumer leaving and rejoining.

The stream goes to a 2-partition topic in phases, the engine consuming throughout:
  A   produced while serve runs;
      then the topic grows to 4 partitions while serve runs (it must find the new
      ones by itself: a metadata refresh, then a rebalance);
  B1  produced by a new kcat that sees 4 partitions; serve takes them;
      serve stops (SIGTERM: leaves the group); the topic grows to 6 partitions;
  B2  produced while no one consumes (partitions 4 and 5 get messages before any
      consumer was ever assigned them: they must be read from the beginning);
      serve starts again (rejoins);
  B3  produced while serve runs, and in the middle serve is stopped and started once
      more (leave and rejoin mid-stream).
Each phase is taken in full before the partition count changes, so one customer's
events stay in order even though adding partitions moves keys to other partitions.
At the end nothing is lost or counted twice: the checks of the crash loop, plus the
answers of customers in no referral equal those of `loyalty ingest`.
"""

import os
import time

import rk


def main():
    a = rk.parse_args(__doc__)
    f = rk.Failures()
    broker = rk.Broker(a)
    events = max(1000, int(4000 * a.scale))
    stream = rk.Stream(a.loyalty, os.path.join(a.work, "stream.jsonl"), events, 300, a.seed)
    ref_dir = os.path.join(a.work, "ref")
    ref = rk.ingest_reference(a.loyalty, ref_dir, stream.path)
    rk.log(f"{len(stream.lines)} lines; reference ingest: appended {ref['appended']}, "
           f"duplicate {ref['duplicate']}, dead-lettered {ref['dead_lettered']}")
    n = len(stream.lines)
    cut = [0, int(n * 0.4), int(n * 0.6), int(n * 0.8), n]
    rate = max(200, events // 10)

    topic = f"rk.rebalance.{a.seed}.{int(time.time())}"
    group = "rk-rebalance"
    broker.create_topic(topic, 2)
    kafka_dir = os.path.join(a.work, "kafka")

    def serve(name):
        return rk.Serve(a.loyalty, kafka_dir, a.work, a.bootstrap, topic, group, name)

    def taken(srv, what):
        ends = broker.end_offsets(topic)
        f.equal(sum(ends.values()), cut[phase + 1], f"messages on the topic after {what}")
        t0 = time.time()
        srv.wait_taken(topic, ends, timeout=120, what=what)
        rk.log(f"{what}: all {sum(ends.values())} messages taken in {time.time() - t0:.1f}s "
               f"({len(ends)} partitions)")

    # A: 2 partitions, serve running.
    phase = 0
    s1 = serve("serve-1")
    rk.Producer(a.bootstrap, topic, stream.keyed(cut[0], cut[1]), rate=rate,
                workdir=a.work).wait()
    taken(s1, "phase A (2 partitions)")
    rebalances_before = s1.metric("loyalty_rebalances")

    # Grow to 4 partitions under the running consumer; B1.
    phase = 1
    broker.add_partitions(topic, 4)
    rk.log("topic grown to 4 partitions while serve-1 runs")
    rk.Producer(a.bootstrap, topic, stream.keyed(cut[1], cut[2]), rate=rate,
                workdir=a.work).wait()
    ends = broker.end_offsets(topic)
    f.check(all(ends.get(p, 0) > 0 for p in (2, 3)),
            f"kcat did not write to the new partitions: {ends}")
    taken(s1, "phase B1 (4 partitions, added under a running consumer)")
    f.check(s1.metric("loyalty_rebalances") > rebalances_before,
            "serve-1 saw no rebalance after partitions were added")
    f.check(s1.stop() == 0, "serve-1 did not exit 0 on SIGTERM")

    # Grow to 6 while no one consumes; B2 lands on partitions never assigned.
    phase = 2
    broker.add_partitions(topic, 6)
    rk.log("serve-1 left the group; topic grown to 6 partitions")
    rk.Producer(a.bootstrap, topic, stream.keyed(cut[2], cut[3]), workdir=a.work).wait()
    ends = broker.end_offsets(topic)
    f.check(all(ends.get(p, 0) > 0 for p in (4, 5)),
            f"kcat did not write to the new partitions: {ends}")
    s2 = serve("serve-2")
    taken(s2, "phase B2 (produced while no consumer; 6 partitions)")

    # B3 with a leave and rejoin mid-stream.
    phase = 3
    producer = rk.Producer(a.bootstrap, topic, stream.keyed(cut[3], cut[4]), rate=rate // 2,
                           workdir=a.work)
    deadline = time.time() + 30
    while producer.sent < (cut[4] - cut[3]) // 3 and time.time() < deadline:
        time.sleep(0.05)
    _, at = s2.progress()
    f.check(s2.stop() == 0, "serve-2 did not exit 0 on SIGTERM mid-stream")
    rk.log(f"serve-2 stopped mid-stream at log length {at}, producer sent {producer.sent}")
    s3 = serve("serve-3")
    producer.wait()
    taken(s3, "phase B3 (leave and rejoin mid-stream)")

    # Every phase was taken before the partition count changed, so each customer's own
    # events kept their order; only referrals (two customers, maybe two partitions)
    # may have interleaved otherwise than in the file.
    rk.finish_against_reference(f, a, s3, broker, topic, kafka_dir, ref_dir, ref, stream,
                                "rebalance")
    f.finish("real-kafka rebalance")


if __name__ == "__main__":
    main()

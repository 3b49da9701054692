#!/usr/bin/env python3
"""real-kafka: the broker is SIGKILLed mid-stream and restarted; nothing is lost.

`loyalty serve --brokers` consumes a multi-partition topic while kcat produces at a
steady rate. Mid-stream the broker gets SIGKILL, stays down a few seconds, and is
restarted on the same ports and log directory. The engine must wait and retry (not
exit, not stop ingesting), take every message once the broker is back, report
healthy again, and end with every input applied exactly once (same checks as the
crash loop).
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

    topic = f"rk.brokerkill.{a.seed}.{int(time.time())}"
    broker.create_topic(topic, 3)
    kafka_dir = os.path.join(a.work, "kafka")
    srv = rk.Serve(a.loyalty, kafka_dir, a.work, a.bootstrap, topic, "rk-brokerkill", "serve")
    rate = max(100, events // 20)
    producer = rk.Producer(a.bootstrap, topic, stream.keyed(), rate=rate, workdir=a.work)
    rk.log(f"producing {len(stream.lines)} messages at {rate}/s to {topic} (3 partitions)")

    # Kill once the engine is well into the stream.
    deadline = time.time() + 60
    while time.time() < deadline and srv.progress()[1] < len(stream.lines) // 4:
        time.sleep(0.1)
    _, at_kill = srv.progress()
    broker.kill9()
    rk.log(f"broker SIGKILLed; engine log length {at_kill}, producer sent {producer.sent}")
    time.sleep(4)
    f.check(srv.proc.poll() is None,
            f"serve exited while the broker was down ({srv.proc.returncode}):\n"
            f"{srv.stderr_text()[-2000:]}")
    code, body = srv.get("/v1/progress")
    f.check(code == 200, f"/v1/progress answered {code} while the broker was down: {body}")
    t0 = time.time()
    broker.restart()
    rk.log(f"broker restarted in {time.time() - t0:.1f}s")

    producer.wait(timeout=300)
    ends = broker.end_offsets(topic)
    f.equal(sum(ends.values()), len(stream.lines), "messages on the topic")
    t0 = time.time()
    srv.wait_taken(topic, ends, timeout=180, what="after the broker restart")
    rk.log(f"serve took the rest {time.time() - t0:.1f}s after the producer ended; ends {ends}")

    # Ingestion and publishing report healthy again (bounded wait: the outbox retries).
    deadline = time.time() + 60
    while True:
        code, body = srv.get("/healthz")
        if code == 200 or time.time() > deadline:
            break
        time.sleep(0.5)
    f.check(code == 200, f"/healthz after the broker came back: {code} {body}")

    rk.finish_against_reference(f, a, srv, broker, topic, kafka_dir, ref_dir, ref, stream,
                                "broker kill")
    f.finish("real-kafka broker kill")


if __name__ == "__main__":
    main()

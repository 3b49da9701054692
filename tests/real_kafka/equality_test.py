#!/usr/bin/env python3
"""real-kafka: serve --brokers on a real broker answers exactly as ingest of the same file.

kcat produces a `loyalty produce` stream (malformed lines included, key = customer_id)
to a one-partition topic, so the engine sees the file's order; `loyalty serve --brokers`
consumes it until /v1/progress is at the partition's end. Then every customer's
balance, tier and churn at a fixed as_of, the program stats, every event's outcome,
the exported ledger, the log length and the appended/duplicate/dead-lettered counts
must equal those of `loyalty ingest` of the same file into another data directory.
Dead letters must also arrive on loyalty.events.dlq with a loyalty-reason header.
"""

import json
import os
import time
import urllib.parse

import rk


def main():
    a = rk.parse_args(__doc__)
    f = rk.Failures()
    broker = rk.Broker(a)
    events = max(500, int(3000 * a.scale))
    stream = rk.Stream(a.loyalty, os.path.join(a.work, "stream.jsonl"), events, 300, a.seed)
    rk.log(f"{len(stream.lines)} lines, {len(stream.customers)} customers, "
           f"{len(stream.event_ids)} event ids")

    ref_dir = os.path.join(a.work, "ref")
    ref = rk.ingest_reference(a.loyalty, ref_dir, stream.path)
    rk.log(f"reference ingest: {ref}")

    topic = f"rk.equality.{a.seed}.{int(time.time())}"
    broker.create_topic(topic, 1)
    t0 = time.time()
    rk.produce(a.bootstrap, topic, stream.keyed(), workdir=a.work)
    ends = broker.end_offsets(topic)
    f.equal(ends, {0: len(stream.lines)}, "messages on the topic after kcat -P")
    rk.log(f"produced {len(stream.lines)} messages to {topic} in {time.time() - t0:.1f}s")

    kafka_dir = os.path.join(a.work, "kafka")
    srv = rk.Serve(a.loyalty, kafka_dir, a.work, a.bootstrap, topic, "rk-equality", "serve")
    t0 = time.time()
    srv.wait_taken(topic, ends, timeout=180, what="(one uninterrupted serve)")
    rk.log(f"serve took every message in {time.time() - t0:.1f}s")
    ref_srv = rk.Serve(a.loyalty, ref_dir, a.work, name="ref-serve")

    # Counts of this one uninterrupted run.
    accepted = srv.metric('loyalty_events_total{outcome="accepted"}')
    rejected = srv.metric('loyalty_events_total{outcome="rejected"}')
    dead = srv.metric('loyalty_events_total{outcome="dead_letter"}')
    dup = srv.metric('loyalty_events_total{outcome="duplicate"}')
    f.equal({"appended": int(accepted + rejected), "duplicate": int(dup),
             "dead_lettered": int(dead)},
            {k: ref[k] for k in ("appended", "duplicate", "dead_lettered")},
            "counts (serve's /metrics vs ingest's summary)")
    by_reason = {r: int(srv.metric(f'loyalty_dead_letters_total{{reason="{r}"}}'))
                 for r in ref["reasons"]}
    f.equal(by_reason, dict(ref["reasons"]), "dead letters by reason")


    customers = sorted(stream.customers) + ["c-never-seen"]
    got = rk.answers(srv, customers, stream.as_of)
    want = rk.answers(ref_srv, customers, stream.as_of)
    f.equal(got, want, f"balance/tier/churn of {len(customers)} customers at {stream.as_of}")
    non404 = sum(1 for (code, _) in got.values() if code == 200)
    f.check(non404 >= len(stream.customers), f"only {non404} answers were 200")
    q = urllib.parse.quote(stream.as_of)
    f.equal(rk.without_log_seq(srv.get(f"/v1/stats?as_of={q}")),
            rk.without_log_seq(ref_srv.get(f"/v1/stats?as_of={q}")), "/v1/stats")
    # Sequence numbers differ where serve wrote sweep records (time-driven signals) that
    # ingest does not write; the order of the events must not.
    got_states = rk.event_states(srv, stream.event_ids)
    want_states = rk.event_states(ref_srv, stream.event_ids)
    f.equal({e: s[:3] for e, s in got_states.items()},
            {e: s[:3] for e, s in want_states.items()},
            f"outcomes of {len(stream.event_ids)} event ids (state, reasons)")

    def in_log_order(states):
        return [e for e, s in sorted(states.items(), key=lambda kv: int(kv[1][3] or 0))
                if int(s[3] or 0) > 0]

    f.check(in_log_order(got_states) == in_log_order(want_states),
            "the events are not in the log in the order of the file (one partition)")

    f.check(srv.stop() == 0, "serve did not exit 0 on SIGTERM")
    f.check(ref_srv.stop() == 0, "the reference serve did not exit 0 on SIGTERM")

    def export_without_seq(data_dir):
        _, text = rk.export_seqs(a.loyalty, data_dir)
        out = []
        for line in text.splitlines():
            d = json.loads(line)
            d.pop("seq", None)
            out.append(json.dumps(d, sort_keys=True))
        return out

    kl, rl = export_without_seq(kafka_dir), export_without_seq(ref_dir)
    if not f.check(kl == rl, "replay export (but the sequence numbers) differs from ingest's"):
        for i, (x, y) in enumerate(zip(kl, rl)):
            if x != y:
                rk.log(f"first difference at entry {i}:\n  kafka: {x}\n  ingest: {y}")
                break
        rk.log(f"{len(kl)} vs {len(rl)} entries")
    rk.check_exactly_once(f, a, kafka_dir, ref_dir, ref, stream, "one partition")

    # Dead letters on loyalty.events.dlq (published by the engine's outbox, at least once),
    # each at the very offset it was read from.
    rk.check_dlq(f, broker, topic, ref, stream, "one partition")
    mine = rk.dlq_messages(broker, topic, ref["dead_lettered"], timeout=5)
    for (p, off), (h, m) in sorted((mine or {}).items()):
        i = int(off)
        if not f.check(p == "0" and 0 <= i < len(stream.lines)
                       and m.get("payload") == stream.lines[i]
                       and m.get("key") == stream.keys[i],
                       f"DLQ message for offset {off} does not carry the key and value "
                       f"produced there: {m}"):
            break

    f.finish("real-kafka equality")


if __name__ == "__main__":
    main()

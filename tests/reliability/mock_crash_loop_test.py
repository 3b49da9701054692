#!/usr/bin/env python3
"""reliability: a crash loop on the mock cluster; every answer equals an uninterrupted run.

`loyalty kafka-mock` runs a mock Kafka cluster with a ONE-partition input topic, so
the order of the stream is fully determined. kcat (idempotent, key = customer id)
feeds the lines of a `loyalty produce --file` stream (malformed lines, duplicates,
refunds, referrals, redemptions) at a steady rate, byte for byte the lines of the
file. Meanwhile `loyalty serve --brokers` is started on one data directory and
killed with SIGKILL, cycle after cycle, at varied moments:

  start     0-1.5 s after the process started (before it joined the group)
  batch     0-1.5 s after it stored its first batch since the start (mid-stream)
  outbox    0-30 ms after that first batch (its outbox publishes what the batch wrote)
  sweep     0.9-1.1 s after a sweep record that followed its first batch, i.e. about
            when the next sweep runs (--sweep-interval 1)
  shutdown  0-1 s after its first batch SIGTERM, then SIGKILL 2-50 ms later
  random    0.5-8 s after its HTTP port was up

After every kill, `loyalty replay verify` must pass, and nothing a killed process had
shown as stored (its /v1/progress) may be missing (the log length, the resume offset).
At the end a last `serve` takes the rest; then, against `loyalty ingest` of the same
file (the uninterrupted run): verify counts the same events and dead letters, every
event id is applied exactly once with the same outcome and entries, the exported
ledger is the same (but sequence numbers), every customer's balance, tier and churn
at several as_of values and /v1/stats at them are equal field by field (but logSeq:
serve also writes sweep records), and every dead letter is on loyalty.events.dlq.

  mock_crash_loop_test.py --loyalty BIN --work DIR [--cycles N] [--events N]
                          [--customers N] [--seed S]

Long soaks: more --cycles (and --events: keep the stream under ~3 MiB, the mock keeps
about 5 MiB a partition); docs/reliability.md has the figures of the ones run.
"""

import argparse
import collections
import datetime
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import types
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "real_kafka"))
import rk  # noqa: E402  (the real-kafka helpers: processes, kcat producer, serve, verify)

TOPIC = "crash.events"
GROUP = "crash-loop"
OUTPUT_TOPICS = ["loyalty.events.dlq", "loyalty.outcomes", "loyalty.signals"]
# A killed member leaves the mock's group within 3 s, so each restart joins quickly.
KAFKA_CONFIG = ["session.timeout.ms=3000", "heartbeat.interval.ms=500",
                "topic.metadata.refresh.interval.ms=2000"]
SERVE_ARGS = ["--sweep-interval", "1"]
MODES = ["start", "batch", "outbox", "sweep", "shutdown", "batch", "random"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    ap.add_argument("--loyalty", required=True, help="the loyalty binary")
    ap.add_argument("--work", required=True, help="scratch directory (emptied first)")
    ap.add_argument("--cycles", type=int, default=int(env("LOYALTY_CRASH_CYCLES", "30")),
                    help="serve processes killed (default 30; env LOYALTY_CRASH_CYCLES)")
    ap.add_argument("--events", type=int, default=int(env("LOYALTY_CRASH_EVENTS", "6000")),
                    help="lines of the stream (default 6000; env LOYALTY_CRASH_EVENTS)")
    ap.add_argument("--customers", type=int, default=int(env("LOYALTY_CRASH_CUSTOMERS", "500")))
    ap.add_argument("--cycle-seconds", type=float, default=5.0,
                    help="first guess of one cycle's length (paces the producer)")
    ap.add_argument("--seed", type=int, default=int(env("LOYALTY_CRASH_SEED", "0")),
                    help="random seed (0: from the clock, printed)")
    a = ap.parse_args()
    if a.seed == 0:
        a.seed = int(time.time()) % 100000 + 1
    rk.log(f"seed {a.seed} (rerun with --seed {a.seed}); {a.cycles} cycles, {a.events} events, "
           f"{a.customers} customers")
    random.seed(a.seed)
    if os.path.exists(a.work):
        shutil.rmtree(a.work)
    os.makedirs(a.work)
    return a


# ---------------------------------------------------------------- the mock cluster

class MockCluster:
    """`loyalty kafka-mock` with the input topic (1 partition) and the outputs."""

    def __init__(self, loyalty, workdir, timeout=60):
        args = [loyalty, "kafka-mock"]
        for t in [TOPIC] + OUTPUT_TOPICS:
            args += ["--topic", t, "--partitions", "1"]
        self.errpath = os.path.join(workdir, "kafka-mock.err")
        self.err = open(self.errpath, "wb")
        self.proc = rk.spawn(args, stdout=subprocess.PIPE, stderr=self.err)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line:
            raise RuntimeError(f"kafka-mock printed no bootstrap address within {timeout}s "
                               f"(exit {self.proc.poll()}):\n"
                               f"{open(self.errpath, errors='replace').read()[-2000:]}")
        self.bootstrap = line
        # rk.Broker's kcat helpers (metadata, end offsets, consume) work on any cluster.
        self.kcat = rk.Broker(types.SimpleNamespace(broker_dir=None, bootstrap=line))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


# ---------------------------------------------------------------- HTTP, kept alive

class Client:
    """GETs over one kept-alive connection (tens of thousands of queries at the end)."""

    def __init__(self, srv):
        self.srv = srv
        self.conn = None

    def get(self, path):
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=60)
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                body = r.read().decode()
                if (r.getheader("Connection") or "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                try:
                    return r.status, json.loads(body)
                except ValueError:
                    return r.status, body
            except (OSError, http.client.HTTPException) as e:
                # The server closes idle and long-used connections: a GET is safe to repeat.
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    state = ("still running" if self.srv.proc.poll() is None
                             else f"exited with {self.srv.proc.returncode}")
                    raise RuntimeError(f"GET {path} from {self.srv.name} failed ({e!r}); it is "
                                       f"{state}; its stderr ends:\n"
                                       f"{self.srv.stderr_text()[-4000:]}")
                time.sleep(0.2)


def without_seqs(x):
    """An answer without sequence numbers (`logSeq`, `seq`): serve's log also holds
    sweep records that ingest never writes, so the same event sits at another seq."""
    if isinstance(x, dict):
        return {k: without_seqs(v) for k, v in x.items() if k not in ("seq", "logSeq")}
    if isinstance(x, list):
        return [without_seqs(v) for v in x]
    return x


def metrics(srv):
    code, text = srv.get("/metrics", timeout=10)
    out = collections.Counter()
    for line in str(text).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name.split("{")[0]] += float(value)
            except ValueError:
                pass
    return out


# ---------------------------------------------------------------- the stream

def as_of_values(stream):
    """Fixed as_of values: four spread over the stream's occurredAt range, the day
    after its end, rk's as_of (about two weeks later) and one ~400 days after the end
    (every status lapsed, every lot expired)."""
    times = []
    for line in stream.lines:
        m = re.search(r'"occurredAt":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"', line)
        if m:
            try:
                times.append(datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ"))
            except ValueError:
                pass
    times.sort()
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    picks = [times[int(q * (len(times) - 1))] for q in (0.15, 0.4, 0.65, 0.9)]
    end = times[-1]
    values = [t.strftime(fmt) for t in picks]
    values += [(end + datetime.timedelta(days=1)).strftime(fmt), stream.as_of,
               (end + datetime.timedelta(days=400)).strftime(fmt)]
    return sorted(set(values))


# ---------------------------------------------------------------- one cycle

class Cycle:
    """One serve process and the moment it is killed."""

    def __init__(self, a, kafka_dir, mock, index, mode):
        self.a, self.index, self.mode = a, index, mode
        self.srv = rk.Serve(a.loyalty, kafka_dir, a.work, mock.bootstrap, TOPIC, GROUP,
                            f"serve-{index}", kafka_config=KAFKA_CONFIG, extra_args=SERVE_ARGS,
                            wait=False)
        self.started = time.time()
        self.seen = (0, 0)  # (largest offset, largest log length) /v1/progress showed
        self.note = ""

    def progress(self):
        offsets, length = self.srv.progress()
        off = offsets.get((TOPIC, 0), 0)
        self.seen = (max(self.seen[0], off), max(self.seen[1], length))
        return off, length

    def alive(self):
        return self.srv.proc.poll() is None

    def wait_batch(self, timeout, total_lines, interval=0.05):
        """Until a batch is stored after the start (the offset moves): True, or False
        when nothing arrives (the deadline, or nothing is left to take)."""
        off0, _ = self.progress()
        deadline = time.time() + timeout
        while time.time() < deadline and self.alive():
            off, _ = self.progress()
            if off > off0:
                return True
            if off >= total_lines:
                return False
            time.sleep(interval)
        return False

    def run(self, total_lines):
        """Waits for this cycle's moment; returns with the process still running."""
        m = self.mode
        if m == "start":
            delay = random.uniform(0.0, 1.5)
            time.sleep(max(0.0, self.started + delay - time.time()))
            self.note = f"{delay:.2f}s after the start"
            return
        self.srv.wait_port(120)
        self.progress()
        if m == "random":
            delay = random.uniform(0.5, 8.0)
            time.sleep(delay)
            self.note = f"{delay:.2f}s after HTTP was up"
        elif m in ("batch", "outbox", "shutdown"):
            moved = self.wait_batch(60, total_lines, 0.005 if m == "outbox" else 0.05)
            what = "its first batch" if moved else "60 s or the end of the input (no batch)"
            delay = (random.uniform(0.0, 1.5) if m == "batch"
                     else random.uniform(0.0, 0.03) if m == "outbox"
                     else random.uniform(0.0, 1.0))
            time.sleep(delay)
            self.note = f"{delay * 1000:.0f}ms after {what}"
            if m == "outbox":
                try:
                    mt = metrics(self.srv)
                    behind = mt["loyalty_log_length"] - mt["loyalty_outbox_cursor"]
                    self.note += f"; outbox {int(behind)} records behind the log"
                    self.outbox_behind = behind > 0
                except RuntimeError:
                    pass
        elif m == "sweep":
            # A sweep that found customers due after this process's first batch: the
            # next one (a second later) looks at the customers of the batches since.
            self.wait_batch(60, total_lines)
            deadline = time.time() + 30
            sweeps0 = metrics(self.srv)["loyalty_sweeps_total"]
            while time.time() < deadline and self.alive():
                if metrics(self.srv)["loyalty_sweeps_total"] > sweeps0:
                    break
                time.sleep(0.02)
            else:
                self.note = "no sweep record seen within 30 s; "
            delay = random.uniform(0.9, 1.1)  # about when the next one runs
            time.sleep(delay)
            self.note += f"{delay:.2f}s after a sweep record"

    def kill(self):
        """SIGKILL (for shutdown: SIGTERM first). The process must still have been
        running: anything else is a crash or an unexpected exit."""
        p = self.srv.proc
        running = p.poll() is None
        if running and self.srv.port is not None:
            try:
                self.progress()
            except RuntimeError:
                pass
        if self.mode == "shutdown" and running:
            p.send_signal(signal.SIGTERM)
            delay = random.uniform(0.002, 0.05)
            time.sleep(delay)
            self.note += f"; SIGTERM, SIGKILL {delay * 1000:.0f}ms later"
            if p.poll() is not None:
                self.note += f" (it had exited {p.returncode} by then)"
                running = p.returncode == 0  # a clean stop: fine
        self.srv.kill9()
        return running


# ---------------------------------------------------------------- checks

def check_after_kill(f, a, c, kafka_dir, nothing_stored_yet):
    """verify passes, and what the killed process showed as stored is in the log.

    A process killed while it created the store (the first start) leaves none, or one
    whose creation did not finish: verify then says the directory holds no
    initialized log, which is the truth as long as no process ever stored anything
    (the next serve must finish the store and go on, which the next cycle checks)."""
    rc, text, counts, records = rk.verify(a.loyalty, kafka_dir)
    if (rc != 0 and nothing_stored_yet and c.seen[1] == 0 and
            ("holds no initialized event log" in text or "no event log in" in text)):
        c.note += "; killed before the store was created"
        return 0, 0, None
    f.check(rc == 0, f"cycle {c.index} ({c.mode}): replay verify exited {rc} after the kill:\n"
                     f"{text[-3000:]}")
    if records is not None:
        f.check(records >= c.seen[1],
                f"cycle {c.index}: the log has {records} records after the kill, but the "
                f"process had shown a log length of {c.seen[1]} (a stored batch was lost)")
    return rc, records, counts


def resume_offset(srv):
    m = re.search(r"assigned " + re.escape(TOPIC) + r"\[0\] from offset (\d+)", srv.stderr_text())
    return int(m.group(1)) if m else None


def answers(client, customers, as_ofs):
    out = {}
    for t in as_ofs:
        q = urllib.parse.quote(t)
        for cust in customers:
            cq = urllib.parse.quote(cust, safe="")
            for kind in ("balance", "tier", "churn"):
                code, body = client.get(f"/v1/customers/{cq}/{kind}?as_of={q}")
                out[(cust, kind, t)] = (code, without_seqs(body))
    return out


def events(client, event_ids):
    out = {}
    for e in sorted(event_ids):
        code, body = client.get(f"/v1/events/{urllib.parse.quote(e, safe='')}")
        out[e] = (code, without_seqs(body))
    return out


def export_without_seq(loyalty, data_dir):
    _, text = rk.export_seqs(loyalty, data_dir)
    return [json.dumps(without_seqs(json.loads(line)), sort_keys=True)
            for line in text.splitlines()]


def main():
    a = parse_args()
    f = rk.Failures()
    t_start = time.time()
    stream = rk.Stream(a.loyalty, os.path.join(a.work, "stream.jsonl"), a.events, a.customers,
                       a.seed)
    size = os.path.getsize(stream.path)
    f.check(size < 3.5 * 2**20, f"the stream is {size} bytes: the mock keeps ~5 MiB a "
                                f"partition, keep it under ~3 MiB (fewer --events)")
    ref_dir = os.path.join(a.work, "ref")
    ref = rk.ingest_reference(a.loyalty, ref_dir, stream.path)
    as_ofs = as_of_values(stream)
    rk.log(f"{len(stream.lines)} lines ({size} bytes), {len(stream.customers)} customer ids, "
           f"{len(stream.event_ids)} event ids; reference ingest: appended {ref['appended']}, "
           f"duplicate {ref['duplicate']}, dead-lettered {ref['dead_lettered']}; as_of {as_ofs}")

    mock = MockCluster(a.loyalty, a.work)
    rk.log(f"kafka-mock at {mock.bootstrap}: {TOPIC} (1 partition), {', '.join(OUTPUT_TOPICS)}")
    kafka_dir = os.path.join(a.work, "kafka")

    # A backlog of a tenth first (the first cycles take big batches), the rest paced so
    # that it lasts about as long as the kill cycles (the rate follows their real length).
    lines = stream.keyed()
    backlog = len(lines) // 10
    rk.produce(mock.bootstrap, TOPIC, lines[:backlog], workdir=a.work)
    rest = lines[backlog:]
    rate = max(1.0, len(rest) / (a.cycles * a.cycle_seconds))
    producer = rk.Producer(mock.bootstrap, TOPIC, rest, rate=rate, workdir=a.work)
    rk.log(f"{backlog} lines produced as a backlog; the other {len(rest)} follow at about "
           f"{rate:.0f}/s while {a.cycles} serve processes are killed")

    schedule = []
    while len(schedule) < a.cycles:
        r = list(MODES)
        random.shuffle(r)
        schedule += r
    schedule = schedule[:a.cycles]
    kills = collections.Counter()
    outbox_behind = 0
    t_cycles = time.time()
    seen_offset = 0  # the largest input offset any killed process showed as stored
    last_records = 0
    for i, mode in enumerate(schedule):
        if not f.check(mock.alive(), f"kafka-mock exited ({mock.proc.returncode})"):
            break
        c = Cycle(a, kafka_dir, mock, i, mode)
        try:
            c.run(len(lines))
        except RuntimeError as e:
            f.check(False, f"cycle {i} ({mode}): {e}")
        ok = c.kill()
        # Where it resumed (when it got so far): never before what an earlier one stored.
        off = resume_offset(c.srv)
        f.check(off is None or off >= seen_offset,
                f"cycle {i} resumed at offset {off}, but an earlier process had shown offset "
                f"{seen_offset} as stored (a stored batch lost)")
        seen_offset = max(seen_offset, c.seen[0])
        f.check(ok, f"cycle {i} ({mode}): serve had exited by itself "
                    f"({c.srv.proc.returncode}) before the kill:\n{c.srv.stderr_text()[-3000:]}")
        kills[mode] += 1
        outbox_behind += int(getattr(c, "outbox_behind", False))
        rc, records, counts = check_after_kill(f, a, c, kafka_dir, last_records == 0)
        f.check(records is None or records >= last_records,
                f"cycle {i}: the log shrank from {last_records} to {records} records")
        last_records = records or last_records
        rk.log(f"cycle {i:3d} {mode:8s} SIGKILL {c.note}; resumed at "
               f"{'-' if off is None else off}, shown offset {c.seen[0]}, log {c.seen[1]}; "
               f"verify {'ok' if rc == 0 else 'FAILED'} ({records} records); "
               f"producer sent {producer.sent + backlog}/{len(lines)}")
        if len(f.items) > 5:
            rk.log("too many failures: stopping the loop")
            break
        # Pace the producer to the cycles' real length: it ends about with the last one.
        left = a.cycles - i - 1
        per_cycle = (time.time() - t_cycles) / (i + 1)
        if left > 0 and producer.thread.is_alive():
            producer.set_rate(max(1.0, (len(rest) - producer.sent) / (left * per_cycle)))

    cycles_done = sum(kills.values())
    producer.set_rate(0)
    producer.wait(timeout=300)
    ends = mock.kcat.end_offsets(TOPIC)
    f.equal(ends, {0: len(lines)}, "messages on the input topic (kcat -Q)")
    rk.log(f"{cycles_done} kills ({dict(kills)}); the producer is done; a last serve takes "
           f"the rest")

    srv = rk.Serve(a.loyalty, kafka_dir, a.work, mock.bootstrap, TOPIC, GROUP, "serve-final",
                   kafka_config=KAFKA_CONFIG, extra_args=SERVE_ARGS)
    t0 = time.time()
    deadline = time.time() + 120
    while resume_offset(srv) is None and time.time() < deadline and srv.proc.poll() is None:
        time.sleep(0.1)  # the group joined: /v1/progress alone shows the stored offsets
    srv.wait_taken(TOPIC, {0: len(lines)}, timeout=300, what=f"after {cycles_done} kills")
    off = resume_offset(srv)
    f.check(off is not None, f"the last serve was never assigned {TOPIC}[0] within 120 s:\n"
                             f"{srv.stderr_text()[-2000:]}")
    f.check(off is None or off >= seen_offset,
            f"the last serve resumed at offset {off}, before the {seen_offset} shown as stored")
    rk.log(f"the last serve took the rest in {time.time() - t0:.1f}s (resumed at {off})")
    # Everything published: the outbox cursor reaches the log's length.
    published, cursor, length = srv.wait_published(timeout=180)
    f.check(published, f"the outbox did not catch up within 180 s: cursor {cursor}, log {length}")

    # --- against the uninterrupted run
    ref_srv = rk.Serve(a.loyalty, ref_dir, a.work, name="ref-serve")
    got_c, want_c = Client(srv), Client(ref_srv)
    customers = sorted(stream.customers) + ["c-never-seen"]
    t0 = time.time()
    got, want = answers(got_c, customers, as_ofs), answers(want_c, customers, as_ofs)
    f.equal(got, want, f"balance/tier/churn of {len(customers)} customer ids at "
                       f"{len(as_ofs)} as_of values (crash-looped vs uninterrupted)")
    known = sum(1 for (code, _) in want.values() if code == 200)
    f.check(known >= len(as_ofs) * 3 * len(stream.customers) // 2,
            f"only {known} of the reference's answers were 200: the comparison is hollow")
    for t in as_ofs:
        q = urllib.parse.quote(t)
        (gc, gb), (wc, wb) = got_c.get(f"/v1/stats?as_of={q}"), want_c.get(f"/v1/stats?as_of={q}")
        f.equal({"HTTP status": gc, **without_seqs(gb if isinstance(gb, dict) else {"": gb})},
                {"HTTP status": wc, **without_seqs(wb if isinstance(wb, dict) else {"": wb})},
                f"/v1/stats at {t}")
    got_e, want_e = events(got_c, stream.event_ids), events(want_c, stream.event_ids)
    f.equal(got_e, want_e, f"/v1/events of {len(stream.event_ids)} event ids (state, reasons, "
                           f"entries)")
    states = collections.Counter(b.get("state") if isinstance(b, dict) else code
                                 for code, b in want_e.values())
    rk.log(f"compared {len(got)} customer answers, {len(as_ofs)} stats and {len(got_e)} events "
           f"in {time.time() - t0:.1f}s; the reference's events: {dict(states)}")

    # --- every dead letter on loyalty.events.dlq (at least once, by source offset)
    dlq = mock.kcat.consume_all("loyalty.events.dlq", timeout=120)
    positions = collections.Counter()
    bad = []
    for m in dlq:
        h = m.get("headers") or []
        hd = dict(zip(h[0::2], h[1::2]))
        if hd.get("loyalty-source-topic") != TOPIC:
            continue
        off = int(hd.get("loyalty-source-offset", -1))
        positions[off] += 1
        if not (0 <= off < len(lines) and m.get("payload") == stream.lines[off]
                and m.get("key") == stream.keys[off]):
            bad.append(m)
    f.equal(len(positions), ref["dead_lettered"], "dead letters on loyalty.events.dlq "
                                                  "(distinct source offsets)")
    f.check(not bad, f"{len(bad)} DLQ messages do not carry the key and value produced at "
                     f"their source offset: {bad[:3]}")
    repeats = sum(n - 1 for n in positions.values())
    rk.log(f"loyalty.events.dlq: {len(dlq)} messages, {len(positions)} dead letters, "
           f"{repeats} published again after a kill (at least once)")

    final = metrics(srv)
    f.check(srv.stop() == 0, "the last serve did not exit 0 on SIGTERM")
    ref_srv.stop()
    mock.stop()

    # --- the log: every input once, the ledger as the uninterrupted run's
    rk.check_exactly_once(f, a, kafka_dir, ref_dir, ref, stream, "crash loop (mock)")
    kl, rl = export_without_seq(a.loyalty, kafka_dir), export_without_seq(a.loyalty, ref_dir)
    if not f.check(kl == rl, f"replay export (but sequence numbers) differs from the "
                             f"uninterrupted run's ({len(kl)} vs {len(rl)} entries)"):
        for j, (x, y) in enumerate(zip(kl, rl)):
            if x != y:
                rk.log(f"first difference at entry {j}:\n  crash loop: {x}\n  reference:  {y}")
                break
    _, _, counts, records = rk.verify(a.loyalty, kafka_dir)
    rk.log(f"SUMMARY: {cycles_done} kills survived ({dict(kills)}; outbox behind the log at "
           f"{outbox_behind} of the outbox kills), {len(lines)} messages produced, "
           f"{counts and counts['events']} events applied, {ref['duplicate']} duplicates in the "
           f"stream, {counts and counts['dead_letters']} dead letters ({repeats} republished), "
           f"{records} records in the log (with sweeps), "
           f"{int(final['loyalty_sweeps_total'])} sweeps by the last serve; "
           f"{time.time() - t_start:.0f}s")
    f.finish("reliability crash loop (mock cluster)")


if __name__ == "__main__":
    main()

"""Helpers for the real-kafka integration tests (Python 3 stdlib + kcat).

Each test runs `loyalty serve --brokers` against the single-node Apache Kafka broker
that tests/kafka_broker/broker.sh started (the CTest fixture `real_kafka`), and
compares what the engine took with `loyalty ingest` of the same JSON lines. Every
process a test starts is registered here and killed on every exit path. The crash
loop on the mock cluster (tests/reliability/mock_crash_loop_test.py) uses these
helpers too, with `loyalty kafka-mock` in place of the broker.
"""

import argparse
import atexit
import collections
import datetime
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BROKER_SH = os.path.join(os.path.dirname(HERE), "kafka_broker", "broker.sh")
KEY_DELIM = "\t"

_children = []  # every Popen started, killed at exit
_lock = threading.Lock()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _kill_children():
    with _lock:
        kids = list(_children)
    for p in kids:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in kids:
        try:
            p.wait(timeout=10)
        except Exception:
            pass


atexit.register(_kill_children)


def _on_signal(signum, _frame):
    _kill_children()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def _die_with_parent():
    # If the test is killed (a CTest timeout kills only its direct child), the engine
    # and kcat processes it started get SIGKILL too (PR_SET_PDEATHSIG).
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def spawn(args, **kw):
    p = subprocess.Popen(args, preexec_fn=_die_with_parent, **kw)
    with _lock:
        _children.append(p)
    return p


class Failures:
    """Collects what differed; a test exits 1 if anything did."""

    def __init__(self):
        self.items = []

    def check(self, ok, what):
        if not ok:
            self.items.append(what)
            log(f"FAIL: {what}")
        return ok

    def equal(self, got, want, what, limit=10):
        """Compares two values; for dicts, lists the keys that differ."""
        if got == want:
            return True
        if isinstance(got, dict) and isinstance(want, dict):
            keys = sorted(set(got) | set(want), key=str)
            diff = [k for k in keys if got.get(k) != want.get(k)]
            lines = [f"{what}: {len(diff)} of {len(keys)} differ (kafka vs reference)"]
            for k in diff[:limit]:
                lines.append(f"    {k}: {got.get(k)!r} != {want.get(k)!r}")
            self.check(False, "\n".join(lines))
        else:
            self.check(False, f"{what}: {got!r} != {want!r}")
        return False

    def finish(self, name):
        if self.items:
            print(f"\n{name}: FAILED, {len(self.items)} check(s) differed:", flush=True)
            for i in self.items:
                print(f"  - {i}", flush=True)
            print("0 passed, 1 failed", flush=True)
            sys.exit(1)
        print(f"\n{name}: PASSED", flush=True)
        sys.exit(0)


def parse_args(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--loyalty", required=True, help="the loyalty binary")
    ap.add_argument("--broker-dir", required=True, help="broker.sh's DIR (bootstrap file)")
    ap.add_argument("--work", required=True, help="scratch directory (emptied first)")
    ap.add_argument("--scale", type=float,
                    default=float(os.environ.get("LOYALTY_RK_SCALE", "1")),
                    help="multiplies event counts and cycles (the ASan build passes 0.5)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("LOYALTY_RK_SEED", "0")),
                    help="random seed (0: from the clock, printed)")
    a = ap.parse_args()
    if a.seed == 0:
        a.seed = int(time.time()) % 100000 + 1
    log(f"seed {a.seed} (rerun with --seed {a.seed}), scale {a.scale}")
    random.seed(a.seed)
    if os.path.exists(a.work):
        shutil.rmtree(a.work)
    os.makedirs(a.work)
    a.bootstrap = open(os.path.join(a.broker_dir, "bootstrap")).read().strip()
    return a


def run(args, timeout=300, check=True, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {r.returncode}:\n{r.stdout[-2000:]}\n"
                           f"{r.stderr[-2000:]}")
    return r


# ---------------------------------------------------------------- the stream

class Stream:
    """A `loyalty produce --file` stream, read back: keys, event ids, customers."""

    def __init__(self, loyalty, path, events, customers, seed):
        # Timestamps well in the past, so that no validation depends on when a test runs.
        start = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=420))
        run([loyalty, "produce", "--file", path, "--events", str(events), "--customers",
             str(customers), "--seed", str(seed), "--start",
             start.strftime("%Y-%m-%dT00:00:00Z"), "--span-days", "365"])
        self.path = path
        self.lines = open(path, encoding="utf-8").read().splitlines()
        self.keys = []
        self.event_ids = set()       # of lines that are JSON objects with an eventId
        self.customers = set()
        self.referral_customers = set()  # referrers and referees
        self.event_customer = {}
        for line in self.lines:
            if KEY_DELIM in line:
                raise RuntimeError("a produced line holds the key delimiter (tab)")
            m = re.search(r'"customerId":"([^"]*)"', line)
            self.keys.append(m.group(1) if m and m.group(1) else "nokey")
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if not isinstance(d, dict):
                continue
            c = d.get("customerId")
            if isinstance(c, str) and c:
                self.customers.add(c)
            e = d.get("eventId")
            if isinstance(e, str) and e and len(e) <= 128 and "/" not in e:
                self.event_ids.add(e)
                self.event_customer.setdefault(e, set()).add(c)
            r = d.get("referral")
            if isinstance(r, dict):
                for k in ("referrerId", "refereeId"):
                    if isinstance(r.get(k), str):
                        self.referral_customers.add(r[k])
                if isinstance(c, str):
                    self.referral_customers.add(c)
        # When the stream ends: answers are compared a little after it.
        self.as_of = (datetime.datetime.now(datetime.timezone.utc)
                      - datetime.timedelta(days=40)).strftime("%Y-%m-%dT00:00:00Z")

    def keyed(self, lo=0, hi=None):
        """Lines lo..hi as kcat -K input (key TAB value)."""
        hi = len(self.lines) if hi is None else hi
        return [f"{self.keys[i]}{KEY_DELIM}{self.lines[i]}" for i in range(lo, hi)]

    def order_independent_customers(self):
        """Customers whose answers cannot depend on how partitions interleave: in no
        referral (a referral bonus or check involves another customer, who may sit in
        another partition)."""
        return sorted(self.customers - self.referral_customers)


def ingest_reference(loyalty, data_dir, path):
    """`loyalty ingest` of the file: its summary counts."""
    r = run([loyalty, "ingest", "--data-dir", data_dir, path])
    text = r.stdout + r.stderr
    m = re.search(r"appended (\d+), duplicate (\d+), dead-lettered (\d+)", text)
    if not m:
        raise RuntimeError(f"no summary in ingest output:\n{text}")
    reasons = collections.Counter()
    for rm in re.finditer(r"dead letter (\w+)\s+(\d+)", text):
        reasons[rm.group(1)] = int(rm.group(2))
    return {"appended": int(m.group(1)), "duplicate": int(m.group(2)),
            "dead_lettered": int(m.group(3)), "reasons": reasons}


# ---------------------------------------------------------------- kafka

class Broker:
    def __init__(self, a):
        self.dir = a.broker_dir
        self.bootstrap = a.bootstrap

    def sh(self, *args, timeout=180):
        return run(["bash", BROKER_SH, *args], timeout=timeout)

    def create_topic(self, topic, partitions):
        self.sh("topics", self.dir, "--create", "--topic", topic, "--partitions",
                str(partitions), "--replication-factor", "1")
        self.wait_partitions(topic, partitions)

    def add_partitions(self, topic, partitions):
        self.sh("topics", self.dir, "--alter", "--topic", topic, "--partitions", str(partitions))
        self.wait_partitions(topic, partitions)

    def partitions(self, topic):
        r = run(["kcat", "-L", "-J", "-b", self.bootstrap, "-t", topic, "-m", "5"],
                timeout=30, check=False)
        if r.returncode != 0:
            return 0
        for t in json.loads(r.stdout).get("topics", []):
            if t.get("topic") == topic and not t.get("error"):
                return len(t.get("partitions", []))
        return 0

    def wait_partitions(self, topic, n, timeout=60):
        deadline = time.time() + timeout
        while self.partitions(topic) != n:
            if time.time() > deadline:
                raise RuntimeError(f"{topic} does not show {n} partitions")
            time.sleep(0.5)

    def end_offsets(self, topic):
        n = self.partitions(topic)
        args = ["kcat", "-Q", "-b", self.bootstrap, "-m", "10"]
        for p in range(n):
            args += ["-t", f"{topic}:{p}:-1"]
        r = run(args, timeout=30)
        out = {}
        for m in re.finditer(r"\[(\d+)\] offset (-?\d+)", r.stdout):
            out[int(m.group(1))] = int(m.group(2))
        if len(out) != n:
            raise RuntimeError(f"kcat -Q answered {r.stdout!r} for {n} partitions")
        return out

    def kill9(self):
        self.sh("kill9", self.dir)

    def restart(self):
        self.sh("restart", self.dir, timeout=240)

    def consume_all(self, topic, timeout=60):
        """Every message of the topic, as kcat -J dicts."""
        r = run(["kcat", "-C", "-b", self.bootstrap, "-t", topic, "-e", "-q", "-J",
                 "-o", "beginning"], timeout=timeout, check=False)
        out = []
        for line in r.stdout.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


class Producer:
    """kcat -P with key = customer_id, fed lines at a bounded rate on a thread."""

    def __init__(self, bootstrap, topic, lines, rate=0, workdir=None):
        self.lines = lines
        self.rate = rate
        self._paced_from = (0, time.time())  # (lines sent, time) the rate counts from
        errpath = os.path.join(workdir or "/tmp", f"kcat-{topic}-{time.time_ns()}.err")
        self.errfile = open(errpath, "wb")
        self.errpath = errpath
        self.proc = spawn(
            ["kcat", "-P", "-E", "-b", bootstrap, "-t", topic, "-K", KEY_DELIM,
             "-X", "enable.idempotence=true", "-X", "linger.ms=5",
             "-X", "topic.metadata.refresh.interval.ms=1000",
             "-X", "message.timeout.ms=240000"],
            stdin=subprocess.PIPE, stderr=self.errfile, stdout=subprocess.DEVNULL)
        self.sent = 0
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def set_rate(self, rate):
        """Changes the rate from now on (0: as fast as kcat takes them)."""
        self._paced_from = (self.sent, time.time())
        self.rate = rate

    def _feed(self):
        self._paced_from = (0, time.time())
        try:
            for i, line in enumerate(self.lines):
                self.proc.stdin.write((line + "\n").encode())
                self.sent = i + 1
                rate = self.rate
                # Paced in steps of 20 lines, fewer at low rates (one step is 0.1 s at most).
                if rate and (i + 1) % max(1, min(20, int(rate / 10))) == 0:
                    self.proc.stdin.flush()
                    while self.rate:  # sleep until on schedule; a new rate counts at once
                        sent0, t0 = self._paced_from
                        ahead = (i + 1 - sent0) / self.rate - (time.time() - t0)
                        if ahead <= 0:
                            break
                        time.sleep(min(ahead, 0.5))
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def running(self):
        return self.thread.is_alive() or self.proc.poll() is None

    def wait(self, timeout=300):
        self.thread.join(timeout)
        rc = self.proc.wait(timeout=timeout)
        self.errfile.close()
        err = open(self.errpath, errors="replace").read()
        if rc != 0 or self.thread.is_alive():
            raise RuntimeError(f"kcat -P exited {rc} after {self.sent} lines:\n{err[-2000:]}")
        return err


def produce(bootstrap, topic, lines, workdir=None, timeout=300):
    return Producer(bootstrap, topic, lines, 0, workdir).wait(timeout)


# ---------------------------------------------------------------- the engine

class Serve:
    """One `loyalty serve` process; HTTP port read from its stderr."""

    # Test-friendly consumer settings: a killed member's session ends quickly, and new
    # partitions are seen within seconds (librdkafka's default is every 5 minutes).
    KAFKA_CONFIG = ["session.timeout.ms=6000", "heartbeat.interval.ms=1000",
                    "topic.metadata.refresh.interval.ms=2000"]

    def __init__(self, loyalty, data_dir, workdir, brokers=None, topic=None, group=None,
                 name="serve", start_timeout=120, kafka_config=None, extra_args=(),
                 wait=True):
        """kafka_config: --kafka-config KEY=VALUE settings (default KAFKA_CONFIG);
        extra_args: more `serve` arguments; wait=False returns at once (the HTTP port
        is then known after wait_port())."""
        self.data_dir = data_dir
        self.name = name
        n = 0
        while os.path.exists(os.path.join(workdir, f"{name}-{n}.err")):
            n += 1
        self.errpath = os.path.join(workdir, f"{name}-{n}.err")
        args = [loyalty, "serve", "--data-dir", data_dir, "--http", "127.0.0.1:0",
                "--grpc", "127.0.0.1:0"]
        if brokers:
            args += ["--brokers", brokers, "--topic", topic, "--group", group]
            for kv in (self.KAFKA_CONFIG if kafka_config is None else kafka_config):
                args += ["--kafka-config", kv]
        args += list(extra_args)
        self.err = open(self.errpath, "wb")
        self.proc = spawn(args, stdout=subprocess.DEVNULL, stderr=self.err)
        self.port = None
        if wait:
            self.wait_port(start_timeout)

    def wait_port(self, timeout=120):
        """Waits until the process logged its HTTP port."""
        name = self.name
        deadline = time.time() + timeout
        while self.port is None:
            text = open(self.errpath, errors="replace").read()
            m = re.search(r"HTTP on [0-9.]+:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited {self.proc.returncode} at start:\n{text[-3000:]}")
            if time.time() > deadline:
                raise RuntimeError(f"{name} did not log its HTTP port within {timeout}s:\n"
                                   f"{text[-3000:]}")
            time.sleep(0.02)
        return self.port

    def stderr_text(self):
        return open(self.errpath, errors="replace").read()

    def get(self, path, timeout=30):
        """(status, parsed JSON or text) of GET path."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                body = r.read().decode()
                code = r.status
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            code = e.code
        except (OSError, http.client.HTTPException) as e:
            # Say why: most often the engine died (a crash, a sanitizer report).
            time.sleep(0.5)
            state = ("still running" if self.proc.poll() is None
                     else f"exited with {self.proc.returncode}")
            raise RuntimeError(f"GET {path} from {self.name} failed ({e!r}); {self.name} is "
                               f"{state}; its stderr ends:\n{self.stderr_text()[-6000:]}")
        try:
            return code, json.loads(body)
        except ValueError:
            return code, body

    def progress(self):
        code, body = self.get("/v1/progress")
        if code != 200:
            raise RuntimeError(f"/v1/progress answered {code}: {body}")
        offsets = {}
        for p in body.get("partitions", []):
            offsets[(p["topic"], int(p["partition"]))] = int(p["offset"])
        return offsets, int(body.get("logLength", 0))

    def wait_taken(self, topic, ends, timeout, what=""):
        """Waits until /v1/progress is at every partition's end offset."""
        deadline = time.time() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode} while waiting "
                                   f"{what}:\n{self.stderr_text()[-3000:]}")
            offsets, _ = self.progress()
            behind = {p: (offsets.get((topic, p), 0), end) for p, end in ends.items()
                      if end > 0 and offsets.get((topic, p), 0) < end}
            if not behind:
                return
            last = behind
            if time.time() > deadline:
                raise RuntimeError(f"{self.name}: not every message taken after {timeout}s "
                                   f"{what}: partition: (next offset, end) {last}\n"
                                   f"health: {self.get('/healthz')}\n"
                                   f"stderr tail:\n{self.stderr_text()[-2000:]}")
            time.sleep(0.2)

    def wait_published(self, timeout):
        """Waits until the outbox cursor reaches the log's length: everything in the log
        is published. Returns (caught_up, cursor, log_length)."""
        deadline = time.time() + timeout
        while True:
            cursor = self.metric("loyalty_outbox_cursor")
            length = self.metric("loyalty_log_length")
            if cursor >= length > 0 or time.time() > deadline:
                return cursor >= length > 0, cursor, length
            time.sleep(0.2)

    def metric(self, name_and_labels):
        code, text = self.get("/metrics")
        total = 0
        for line in str(text).splitlines():
            if line.startswith(name_and_labels):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, timeout=60):
        """SIGTERM: must finish its batch and exit 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"{self.name} did not stop within {timeout}s of SIGTERM "
                                   f"(killed):\n{self.stderr_text()[-2000:]}")
        self.err.close()
        return self.proc.returncode

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.err.close()


# ---------------------------------------------------------------- comparisons

def answers(serve, customers, as_of):
    """balance, tier and churn of each customer at as_of: {(customer, kind): (code, body)}."""
    q = urllib.parse.quote(as_of)
    out = {}
    for c in customers:
        cq = urllib.parse.quote(c, safe="")
        for kind in ("balance", "tier", "churn"):
            out[(c, kind)] = without_log_seq(serve.get(f"/v1/customers/{cq}/{kind}?as_of={q}"))
    return out


def without_log_seq(answer):
    """An answer without `logSeq`: the engine's log also holds records that ingest does
    not write (sweeps: time-driven signals, written by serve), so sequence numbers of
    the same events differ between the two logs."""
    code, body = answer
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "logSeq"}
    return code, body


def event_states(serve, event_ids):
    """{event_id: (state, reject reason, dead-letter reason, seq)} from /v1/events."""
    out = {}
    for e in sorted(event_ids):
        code, body = serve.get(f"/v1/events/{urllib.parse.quote(e, safe='')}")
        if code != 200 or not isinstance(body, dict):
            out[e] = (f"HTTP {code}", str(body)[:200], "", "")
        else:
            out[e] = (body.get("state"), body.get("rejectReason"), body.get("deadLetterReason"),
                      body.get("seq"))
    return out


def verify(loyalty, data_dir):
    """`loyalty replay verify`: (exit code, output, {events, dead letters}, records)."""
    r = run([loyalty, "replay", "verify", "--data-dir", data_dir], check=False, timeout=600)
    text = r.stdout + r.stderr
    m = re.search(r"validation: (\d+) events and (\d+) dead letters", text)
    counts = {"events": int(m.group(1)), "dead_letters": int(m.group(2))} if m else None
    m = re.search(r"verified (\d+) records", text)
    return r.returncode, text, counts, int(m.group(1)) if m else None


def export_seqs(loyalty, data_dir):
    """From `replay export`: {event_id: set of log sequence numbers of its entries}."""
    r = run([loyalty, "replay", "export", "--data-dir", data_dir, "--format", "jsonl"],
            timeout=600)
    seqs = collections.defaultdict(set)
    lines = 0
    for line in r.stdout.splitlines():
        d = json.loads(line)
        seqs[d.get("eventId", "")].add(d.get("seq"))
        lines += 1
    return seqs, r.stdout


def check_exactly_once(f, a, kafka_dir, ref_dir, ref_counts, stream, what):
    """The log holds every input exactly once: as many events and dead letters as the
    reference ingest, every event id at one record, verify passes."""
    rc, text, counts, records = verify(a.loyalty, kafka_dir)
    f.check(rc == 0, f"{what}: replay verify exited {rc}:\n{text[-3000:]}")
    if counts is not None:
        f.equal(counts, {"events": ref_counts["appended"],
                         "dead_letters": ref_counts["dead_lettered"]},
                f"{what}: events and dead letters in the log (replay verify)")
        log(f"{what}: replay verify passed: {records} records, {counts['events']} events, "
            f"{counts['dead_letters']} dead letters (as ingest), the rest program and sweep "
            f"records")
    else:
        f.check(False, f"{what}: no validation counts in replay verify's output:\n{text[-2000:]}")
    seqs, _ = export_seqs(a.loyalty, kafka_dir)
    doubled = {e: sorted(s) for e, s in seqs.items() if len(s) > 1}
    f.check(not doubled, f"{what}: event ids with ledger entries at more than one record "
                         f"(applied twice): {dict(list(doubled.items())[:10])}")
    ref_seqs, _ = export_seqs(a.loyalty, ref_dir)
    missing = sorted(set(ref_seqs) - set(seqs))
    extra = sorted(set(seqs) - set(ref_seqs))
    f.check(not missing, f"{what}: {len(missing)} event ids applied by ingest are missing from "
                         f"the engine's export: {missing[:20]}")
    f.check(not extra, f"{what}: {len(extra)} event ids in the engine's export that ingest did "
                       f"not apply: {extra[:20]}")
    return seqs


def _category(state):
    s = state[0] or ""
    if s in ("EVENT_ACCEPTED", "EVENT_REJECTED"):
        return "applied"
    return s


def compare_with_reference(f, srv, ref_srv, stream, what):
    """What cannot depend on how partitions interleave must equal the reference ingest:
    balance/tier/churn of customers in no referral, the outcome of their events, and
    for every event id whether it was applied, dead-lettered or is unknown."""
    customers = stream.order_independent_customers()
    f.equal(answers(srv, customers, stream.as_of), answers(ref_srv, customers, stream.as_of),
            f"{what}: balance/tier/churn of {len(customers)} customers (in no referral) at "
            f"{stream.as_of}")
    got = event_states(srv, stream.event_ids)
    want = event_states(ref_srv, stream.event_ids)
    f.equal({e: _category(s) for e, s in got.items()},
            {e: _category(s) for e, s in want.items()},
            f"{what}: applied / dead-lettered / unknown of {len(got)} event ids")
    independent = set(customers)
    strict = [e for e in stream.event_ids if stream.event_customer[e] <= independent]
    f.equal({e: got[e][:3] for e in strict}, {e: want[e][:3] for e in strict},
            f"{what}: outcomes of the {len(strict)} events of those customers")
    log(f"{what}: compared {len(customers)} customers and {len(got)} event ids with the "
        f"reference")


def dlq_messages(broker, topic, want, timeout=60):
    """Messages on loyalty.events.dlq that came from `topic`, one per source position
    (publishing is at least once): {(partition, offset): (headers, message)}. Waits,
    bounded, until `want` positions are there."""
    deadline = time.time() + timeout
    while True:
        mine = {}
        for m in broker.consume_all("loyalty.events.dlq"):
            h = m.get("headers") or []
            headers = dict(zip(h[0::2], h[1::2]))
            if headers.get("loyalty-source-topic") == topic:
                mine[(headers.get("loyalty-source-partition"),
                      headers.get("loyalty-source-offset"))] = (headers, m)
        if len(mine) >= want or time.time() > deadline:
            return mine
        time.sleep(1)


def check_dlq(f, broker, topic, ref, stream, what):
    """Every dead letter is on loyalty.events.dlq once per source position, with its
    reason, the original key and value: the reasons counted as ingest counts them."""
    mine = dlq_messages(broker, topic, ref["dead_lettered"])
    reasons = collections.Counter(h.get("loyalty-reason") for h, _ in mine.values())
    f.equal(dict(reasons), dict(ref["reasons"]),
            f"{what}: dead letters on loyalty.events.dlq from {topic} (one per source "
            f"position), by loyalty-reason")
    originals = collections.defaultdict(set)
    for k, v in zip(stream.keys, stream.lines):
        originals[v].add(k)
    bad = [m for _, m in mine.values() if m.get("key") not in originals.get(m.get("payload"), ())]
    f.check(not bad, f"{what}: {len(bad)} DLQ messages do not carry an original key and value "
                     f"of the stream: {bad[:3]}")
    log(f"{what}: {len(mine)} dead letters on loyalty.events.dlq with their reasons")


def finish_against_reference(f, a, srv, broker, topic, kafka_dir, ref_dir, ref, stream, what):
    """The checks every fault test ends with: `srv`'s answers equal a serve over the
    reference (ingest) store, `srv` stops cleanly, every event was taken exactly once,
    and every dead letter is on the DLQ with its reason."""
    ref_srv = Serve(a.loyalty, ref_dir, a.work, name="ref-serve")
    compare_with_reference(f, srv, ref_srv, stream, what)
    f.check(srv.stop() == 0, f"{srv.name} did not exit 0 on SIGTERM")
    ref_srv.stop()
    check_exactly_once(f, a, kafka_dir, ref_dir, ref, stream, what)
    check_dlq(f, broker, topic, ref, stream, what)

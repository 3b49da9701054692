#!/usr/bin/env python3
"""Drive the engine as a user does and compare it with the independent model.

  model_test.py LOYALTY_BINARY [--quick] [--seeds N] [--keep]

For each seed: generate a random scenario (JSON lines, edges on purpose), feed it to the
model, `loyalty ingest` it into a fresh data directory, start `loyalty serve`, ask the
HTTP API for balance / tier / churn of every customer at many as_of and for event
outcomes, and compare field by field. Exits 1 on any mismatch. Last line:
`model: N passed, M failed`.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402

DAY = M.DAY
YEAR = M.YEAR
EPOCH0 = 1672531200  # 2023-01-01T00:00:00Z
FAR_FUTURE = 4102444800  # 2100-01-01


def iso(secs, frac=""):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + frac + "Z"


# ---------------------------------------------------------------- serialization

CAMEL = {"event_id": "eventId", "customer_id": "customerId", "occurred_at": "occurredAt",
         "order_id": "orderId", "amount_minor": "amountMinor", "referrer_id": "referrerId",
         "referee_id": "refereeId", "redemption_id": "redemptionId", "reward_id": "rewardId",
         "redemption_cancel": "redemptionCancel"}


class Ev:
    """A structured event the generator builds; `raw` overrides serialization."""

    def __init__(self, eid, cid, t, kind, body, source="model", frac=""):
        self.eid, self.cid, self.t, self.kind, self.body = eid, cid, t, kind, body
        self.source, self.frac = source, frac

    def copy(self):
        e = Ev(self.eid, self.cid, self.t, self.kind, json.loads(json.dumps(self.body)),
               self.source, self.frac)
        return e


def serialize(ev, rng, style=None, drop=(), extra=None, ts_text=None):
    """Proto3 JSON with a random spelling: names, int64 as string or number, order, unknowns."""
    style = style or {}
    snake = style.get("snake", rng.random() < 0.25)
    strint = style.get("strint", rng.random() < 0.3)

    def name(n):
        return n if snake else CAMEL.get(n, n)

    def val(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return v
        return str(v) if strint else v

    def obj(d):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out[name(k)] = obj(v)
            elif isinstance(v, list):
                out[name(k)] = [obj(x) if isinstance(x, dict) else val(x) for x in v]
            else:
                out[name(k)] = val(v)
        return out

    top = {}
    if "event_id" not in drop:
        top["event_id"] = ev.eid
    if "customer_id" not in drop:
        top["customer_id"] = ev.cid
    if "occurred_at" not in drop:
        top["occurred_at"] = ts_text if ts_text is not None else iso(ev.t, ev.frac)
    if ev.source or rng.random() < 0.5:
        top["source"] = ev.source
    if ev.kind is not None and "payload" not in drop:
        top[ev.kind] = ev.body
    d = obj(top)
    if extra:
        d.update(extra)
    if rng.random() < 0.1:
        d["someFutureField"] = {"x": 1}
    items = list(d.items())
    if rng.random() < 0.3:
        rng.shuffle(items)
    return json.dumps(dict(items), ensure_ascii=rng.random() < 0.5, separators=(",", ":")
                      if rng.random() < 0.5 else (", ", ": ")).encode("utf-8")


# ---------------------------------------------------------------- the scenario


class Scenario:
    def __init__(self, seed, n_events, now):
        self.rng = random.Random(seed)
        self.seed = seed
        self.now = now
        self.model = M.Model(now)
        self.lines = []
        self.events = []  # (Ev, raw) of every structured line, for resends
        self.n = 0
        self.cursor = EPOCH0 + self.rng.randrange(0, 30 * DAY)
        self.active = []
        self.all_ids = []
        self.next_cust = 0
        self.dead_only = []
        self.super_referrer = f"s{seed}-super"
        self.runner = f"s{seed}-runner"  # a referrer whose clock runs ahead
        # keep the scenario's span within about 2.5 years, in the past
        self.tempo = min(self.rng.choice([0.3, 1, 1, 4]), 900 / (0.51 * n_events))
        self.max_active = self.rng.choice([5, 9, 14])
        for _ in range(self.rng.choice([2, 4, 6])):
            self.new_customer()
        self.active.append(self.runner)
        self.all_ids.append(self.runner)
        self.n_events = n_events

    def new_customer(self):
        self.next_cust += 1
        cid = f"c{self.seed}-{self.next_cust}"
        self.active.append(cid)
        self.all_ids.append(cid)
        return cid

    def eid(self):
        self.n += 1
        return f"e{self.seed}-{self.n}"

    def c(self, cid):
        return self.model.customers.get(cid)

    def emit_raw(self, raw, ev=None):
        self.lines.append(raw)
        out = self.model.feed(raw)
        if ev is not None:
            self.events.append((ev, raw))
        return out

    def emit(self, ev, **kw):
        if ev.source == "model" and self.rng.random() < 0.2:
            ev.source = ""
        return self.emit_raw(serialize(ev, self.rng, **kw), ev)

    def when(self, cid, late_ok=True):
        r = self.rng.random()
        base = self.cursor
        if late_ok and r < 0.12:
            return base - self.rng.randrange(1, 40 * DAY)  # late: behind the clock
        if r < 0.2:
            return base  # same second as others
        return base + self.rng.randrange(0, 3 * DAY)

    # -- builders
    def purchase(self, cid, t, amount=None, order_id=None, currency="EUR", lines=None):
        rng = self.rng
        if amount is None:
            amount = rng.choice([rng.randrange(1, 2000), rng.randrange(1999, 2002),
                                 rng.randrange(2000, 20000), rng.randrange(20000, 120000),
                                 rng.randrange(100000, 400000), 99, 100, 101, 150, 79])
        if order_id is None:
            order_id = f"o{self.n}-{rng.randrange(1000)}"
        body = {"order_id": order_id, "amount_minor": amount, "currency": currency}
        if lines is None and rng.random() < 0.4:
            k = rng.randrange(1, 5)
            cuts = sorted(rng.randrange(0, amount + 1) for _ in range(k - 1))
            parts = [b - a for a, b in zip([0] + cuts, cuts + [amount])]
            lines = [{"sku": f"sku-{rng.randrange(50)}",
                      "category": rng.choice(["food", "gift_card", "gift_card", "tools", "",
                                              "Gift_Card", "books"]),
                      "amount_minor": p, "quantity": rng.randrange(1, 4)} for p in parts]
        if lines:
            body["lines"] = lines
        return Ev(self.eid(), cid, t, "purchase", body)

    def orders_of(self, cid):
        c = self.c(cid)
        return list(c.order_list) if c else []

    def step(self):
        rng = self.rng
        self.cursor += int(self.tempo * rng.choice([0, 60, 3600, rng.randrange(0, DAY),
                                                    rng.randrange(0, 4 * DAY)]))
        if rng.random() < 0.04 and len(self.active) < self.max_active:
            cid = self.new_customer()
            self.new_referee(cid)
            return
        if rng.random() < 0.01 and len(self.active) > 4:
            self.active.remove(rng.choice(self.active[:-1]))  # goes quiet: churn, expiry
        r = rng.random()
        cid = rng.choice(self.active)
        if r < 0.30:
            self.do_purchase(cid)
        elif r < 0.42:
            self.do_refund(cid)
        elif r < 0.46:
            self.do_referral(cid)
        elif r < 0.58:
            self.do_redemption(cid)
        elif r < 0.64:
            self.do_cancel(cid)
        elif r < 0.70:
            self.do_adjustment(cid)
        elif r < 0.78:
            self.do_malformed(cid)
        elif r < 0.84:
            self.do_resend()
        elif r < 0.86:
            self.do_conflict()
        elif r < 0.90:
            self.episode()
        elif r < 0.91:
            # the runner's clock runs ahead of everyone
            self.emit(self.purchase(self.runner, self.cursor + rng.randrange(10 * DAY, 80 * DAY)))
        else:
            self.do_purchase(cid)

    def new_referee(self, cid):
        rng = self.rng
        referrer = self.super_referrer if rng.random() < 0.6 else rng.choice(
            [self.runner] + self.active[:-1])
        t0 = self.cursor
        self.emit(Ev(self.eid(), cid, t0, "referral", {"referrer_id": referrer, "referee_id": cid}))
        t_ref = self.c(cid).clock
        if rng.random() < 0.2:  # ALREADY_REFERRED
            self.emit(Ev(self.eid(), cid, t0 + rng.randrange(0, DAY), "referral",
                         {"referrer_id": rng.choice(self.active), "referee_id": cid}))
        r = rng.random()
        if r < 0.15:
            return  # decided later by the random walk, if ever
        if r < 0.25:
            tp = t_ref + 90 * DAY + rng.choice([0, 1])
        else:
            tp = t_ref + rng.randrange(0, 30 * DAY)
        amount = rng.choice([1999, 2000, 2001, 5000, 30000, 800, 120000])
        self.emit(self.purchase(cid, tp, amount=amount))
        # sometimes a full refund around the 14-day claw-back boundary
        if rng.random() < 0.4:
            o = self.orders_of(cid)
            if o:
                o = o[0]
                t = o.t + rng.choice([0, 3600, 14 * DAY - 1, 14 * DAY, 13 * DAY])
                if rng.random() < 0.3:
                    half = o.amount // 2
                    if half > 0:
                        self.emit(Ev(self.eid(), cid, t, "refund",
                                     {"order_id": o.order_id, "amount_minor": half}))
                    self.emit(Ev(self.eid(), cid, t, "refund",
                                 {"order_id": o.order_id, "amount_minor": o.amount - half}))
                else:
                    self.emit(Ev(self.eid(), cid, t, "refund",
                                 {"order_id": o.order_id, "amount_minor": o.amount}))

    def episode(self):
        """Hand-aimed edges, each a short story."""
        rng = self.rng
        k = rng.randrange(10)
        t = self.cursor
        if k == 9:
            # the referrer cap's window: (t_b - 365 days, t_b], 10 bonuses
            referrer = f"cap{self.seed}-{self.n}"
            t0 = t
            if t0 + YEAR + DAY > self.now - DAY:
                return
            for i in range(12):
                cid = self.new_customer()
                self.active.remove(cid)
                if i < 10:
                    tp = t0 + i * 3600
                elif i == 10:
                    tp = t0 + YEAR + rng.choice([-1, 0])  # the first bonus leaves the window at +365d
                else:
                    tp = t0 + YEAR + 3600 - 1 + rng.choice([0, 1])
                self.emit(Ev(self.eid(), cid, tp - 60, "referral",
                             {"referrer_id": referrer, "referee_id": cid}))
                self.emit(self.purchase(cid, tp, amount=2000, lines=[]))
                if i == 3:
                    # a bonus later clawed back still counts
                    o = self.orders_of(cid)[-1]
                    self.emit(Ev(self.eid(), cid, tp + 5, "refund",
                                 {"order_id": o.order_id, "amount_minor": 2000}))
        elif k == 0:
            # a rejected first purchase does not make a customer; the accepted one decides
            cid = self.new_customer()
            oid = f"o{self.n}-first"
            self.emit(self.purchase(cid, t, amount=5000, order_id=oid, currency="USD"))
            self.emit(Ev(self.eid(), cid, t + 60, "referral",
                         {"referrer_id": rng.choice([self.runner, self.super_referrer]),
                          "referee_id": cid}))
            self.emit(self.purchase(cid, t + 120, amount=2000, order_id=oid, currency="EUR"))
            if rng.random() < 0.5:
                # points drawn from the pending bonus before the full refund claws it back
                self.emit(Ev(self.eid(), cid, t + 180, "adjustment",
                             {"points": -rng.randrange(1, 300), "reason": "fix", "actor": "a"}))
            self.emit(Ev(self.eid(), cid, t + 240, "refund", {"order_id": oid, "amount_minor": 2000}))
        elif k == 1:
            # ids are per customer: another customer's order and redemption ids
            a, b = rng.sample(self.active, 2)
            oa = self.orders_of(a)
            if oa:
                o = rng.choice(oa)
                self.emit(self.purchase(b, self.when(b), order_id=o.order_id))
                self.emit(Ev(self.eid(), b, self.when(b), "refund",
                             {"order_id": o.order_id + "-x", "amount_minor": 1}))
            ca = self.c(a)
            if ca and ca.redemptions:
                rid = rng.choice(sorted(ca.redemptions))
                self.emit(Ev(self.eid(), b, self.when(b), "redemption_cancel", {"redemption_id": rid}))
                self.emit(Ev(self.eid(), b, self.when(b), "redemption",
                             {"redemption_id": rid, "points": 1, "reward_id": "w"}))
        elif k == 2:
            # tier thresholds hit exactly, then refunds that take the status back
            cid = self.new_customer()
            amounts = [50000, 150000, 300000, 1]
            oids = []
            for i, amt in enumerate(amounts):
                ev = self.purchase(cid, t + i * DAY, amount=amt, lines=[])
                oids.append(ev.body["order_id"])
                self.emit(ev)
            self.emit(Ev(self.eid(), cid, t + 5 * DAY, "refund",
                         {"order_id": oids[rng.randrange(3)], "amount_minor": rng.choice([1, 2, 50000])}))
        elif k == 3:
            # a whale: amounts at the 10^12 limit, 128-bit products
            cid = self.new_customer()
            for i in range(3):
                amt = rng.choice([10 ** 12, 10 ** 12 - 1, 999999999999, 7 * 10 ** 11])
                ev = self.purchase(cid, t + i, amount=amt, lines=[])
                self.emit(ev)
                if i == 2:
                    self.emit(Ev(self.eid(), cid, t + 10, "refund",
                                 {"order_id": ev.body["order_id"], "amount_minor": amt - 1}))
            self.emit(Ev(self.eid(), cid, t + 20 * DAY, "redemption",
                         {"redemption_id": "big", "points": 10 ** 12, "reward_id": "w"}))
        elif k == 4:
            # sparse purchases over more than two years: expected interval, churn, tiers
            cid = self.new_customer()
            t0 = EPOCH0 - 2 * YEAR + rng.randrange(0, 100 * DAY)
            for i in range(8):
                self.emit(self.purchase(cid, t0 + i * rng.randrange(100 * DAY, 200 * DAY),
                                        amount=rng.randrange(1000, 90000)))
        elif k == 5:
            # redemptions and cancels right at lot boundaries
            cid = rng.choice(self.active)
            c = self.c(cid)
            if c and c.lots:
                l = rng.choice(c.lots[-10:])
                for x in (l.available_at - 1, l.available_at, l.expires_at - 1, l.expires_at):
                    self.emit(Ev(self.eid(), cid, x, "redemption",
                                 {"redemption_id": f"rb{self.n}", "points": rng.randrange(1, 50),
                                  "reward_id": "w"}))
                if c.redemptions:
                    rid = sorted(c.redemptions, key=lambda r: c.redemptions[r]["t"])[-1]
                    self.emit(Ev(self.eid(), cid, self.c(cid).clock + rng.choice([0, 1, 40 * DAY]),
                                 "redemption_cancel", {"redemption_id": rid}))
        elif k == 6:
            # debt, then credits and a cancel that pay it
            cid = rng.choice(self.active)
            c = self.c(cid)
            if c and c.clock is not None:
                avail = max(0, c.available_at_t(c.clock))
                rid = f"rd{self.n}-{rng.randrange(10 ** 6)}"
                if avail > 0:
                    self.emit(Ev(self.eid(), cid, c.clock, "redemption",
                                 {"redemption_id": rid, "points": avail, "reward_id": "w"}))
                self.emit(Ev(self.eid(), cid, c.clock, "adjustment",
                             {"points": -rng.randrange(1, 2000), "reason": "x", "actor": "a"}))
                if rng.random() < 0.5:
                    self.emit(self.purchase(cid, c.clock + 60, amount=rng.randrange(100, 90000)))
                self.emit(Ev(self.eid(), cid, c.clock + rng.choice([120, 30 * DAY]),
                             "redemption_cancel", {"redemption_id": rid}))
        elif k == 7:
            # spellings of time: offsets and fractions
            cid = rng.choice(self.active)
            ev = Ev(self.eid(), cid, self.when(cid), "adjustment",
                    {"points": rng.randrange(1, 9), "reason": "t", "actor": "a"})
            ev.frac = rng.choice([".999999999", ".5", ".000", ".1"])
            self.emit(ev)
            e2 = ev.copy()
            self.emit(e2, ts_text=iso(ev.t + 7200, ev.frac)[:-1] + "+02:00")  # same instant
            e3 = Ev(self.eid(), cid, self.when(cid), "adjustment",
                    {"points": 3, "reason": "t", "actor": "a"})
            self.emit(e3, ts_text=iso(e3.t - 5400)[:-1] + "-01:30")
        else:
            # same event_id, other customer: a conflict
            if self.events:
                ev, _ = rng.choice(self.events[-100:])
                e = ev.copy()
                e.cid = rng.choice(self.active)
                self.emit(e)

    def do_purchase(self, cid):
        rng = self.rng
        t = self.when(cid)
        r = rng.random()
        if r < 0.04 and self.orders_of(cid):
            o = rng.choice(self.orders_of(cid))
            self.emit(self.purchase(cid, t, order_id=o.order_id))  # DUPLICATE_ORDER
        elif r < 0.07:
            self.emit(self.purchase(cid, t, currency=rng.choice(["USD", "eur", "GBP"])))
        else:
            self.emit(self.purchase(cid, t))

    def do_refund(self, cid):
        rng = self.rng
        orders = self.orders_of(cid)
        if not orders or rng.random() < 0.05:
            self.emit(Ev(self.eid(), cid, self.when(cid), "refund",
                         {"order_id": f"nope-{rng.randrange(99)}", "amount_minor": 100}))
            return
        o = rng.choice(orders[-8:] if rng.random() < 0.7 else orders)
        left = o.amount - o.refunded
        r = rng.random()
        if r < 0.3:
            amt = left
        elif r < 0.4:
            amt = left + rng.randrange(1, 100)  # exceeds
        else:
            amt = rng.randrange(1, max(2, left + 1))
        if amt <= 0:
            amt = 1
        r = rng.random()
        if r < 0.12:
            t = o.t + YEAR + rng.choice([-1, 0, 1])
        elif r < 0.2:
            t = o.t + 14 * DAY + rng.choice([-1, 0])
        else:
            t = self.when(cid)
        self.emit(Ev(self.eid(), cid, t, "refund", {"order_id": o.order_id, "amount_minor": amt}))

    def do_referral(self, cid):
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            referrer = cid  # self
        else:
            referrer = rng.choice(self.active + [self.super_referrer])
        self.emit(Ev(self.eid(), cid, self.when(cid), "referral",
                     {"referrer_id": referrer, "referee_id": cid}))

    def do_redemption(self, cid):
        rng = self.rng
        c = self.c(cid)
        t = self.when(cid)
        avail = c.available_at_t(max(t, c.clock)) if c and c.clock is not None else 0
        r = rng.random()
        if r < 0.1 and c and c.redemption_ids:
            rid = rng.choice(sorted(c.redemption_ids))
        else:
            rid = f"r{self.n}"
        if avail > 0 and rng.random() < 0.75:
            pts = rng.choice([avail, max(1, avail // 2), rng.randrange(1, avail + 1), avail + 1])
        else:
            pts = rng.randrange(1, 400)
        body = {"redemption_id": rid, "points": pts, "reward_id": f"rw-{rng.randrange(9)}"}
        if rng.random() < 0.2:
            del body["reward_id"]
        self.emit(Ev(self.eid(), cid, t, "redemption", body))

    def do_cancel(self, cid):
        rng = self.rng
        c = self.c(cid)
        if not c or not c.redemptions or rng.random() < 0.1:
            self.emit(Ev(self.eid(), cid, self.when(cid), "redemption_cancel",
                         {"redemption_id": f"r-unknown-{rng.randrange(9)}"}))
            return
        rid = rng.choice(sorted(c.redemptions))
        red = c.redemptions[rid]
        r = rng.random()
        cands = [red["t"] + 90 * DAY - 1, red["t"] + 90 * DAY]
        for (lot_id, _p) in red["portions"]:
            ex = c.lot(lot_id).expires_at
            if ex < red["t"] + 90 * DAY:
                cands += [ex - 1, ex]
        if r < 0.5:
            t = rng.choice(cands)
        else:
            t = self.when(cid)
        self.emit(Ev(self.eid(), cid, t, "redemption_cancel", {"redemption_id": rid}))

    def do_adjustment(self, cid):
        rng = self.rng
        pts = rng.choice([rng.randrange(1, 500), -rng.randrange(1, 800), -rng.randrange(1, 50)])
        self.emit(Ev(self.eid(), cid, self.when(cid), "adjustment",
                     {"points": pts, "reason": "goodwill", "actor": "agent-7"}))

    def do_resend(self):
        if not self.events:
            return
        ev, raw = self.rng.choice(self.events[-200:])
        e = ev.copy()  # a fresh spelling of the same content
        if e.frac == "" and self.rng.random() < 0.5:
            e.frac = ".000"
        if e.kind == "redemption" and "reward_id" not in e.body:
            e.body["reward_id"] = ""  # proto3: missing equals empty
        self.emit(e)

    def do_conflict(self):
        if not self.events:
            return
        ev, raw = self.rng.choice(self.events[-200:])
        e = ev.copy()
        r = self.rng.random()
        if r < 0.5:
            e.t += 1
        elif r < 0.7:
            e.source = "other"
        else:
            e.frac = ".5"  # a different Timestamp, same second
        self.emit(e)

    def do_malformed(self, cid):
        rng = self.rng
        t = self.when(cid)
        if rng.random() < 0.2:
            cid = f"ghost{self.seed}-{rng.randrange(5)}"  # dead letters only: unknown
            self.dead_only.append(cid)
        base = self.purchase(cid, t, amount=rng.randrange(100, 5000))
        k = rng.randrange(24)
        long_id = "x" * 129
        mb_long = "\u00e9" * 65  # 65 characters, 130 bytes
        ok128 = "y" * 128
        if k == 0:
            self.emit_raw(serialize(base, rng)[:-7])
        elif k == 1:
            self.emit_raw(serialize(base, rng, extra={"customerId": 12345}))
        elif k == 2:
            base.body["amount_minor"] = rng.choice([True, "12a", 1.5])
            self.emit_raw(serialize(base, rng, style={"snake": False, "strint": False}))
        elif k == 3:
            self.emit_raw(serialize(base, rng, ts_text=rng.choice(
                ["2024-02-30T00:00:00Z", "yesterday", "2024-01-01 00:00:00", "2024-01-01T25:00:00Z"])))
        elif k == 4:
            self.emit(base, drop=(rng.choice(["event_id", "customer_id", "occurred_at", "payload"]),))
        elif k == 5:
            base.body[rng.choice(["order_id", "currency"])] = ""
            self.emit(base)
        elif k == 6:
            which = rng.choice(["eid", "cid", "order", "sku"])
            if which == "eid":
                base.eid = rng.choice([long_id, mb_long])
            elif which == "cid":
                base.cid = rng.choice([long_id, mb_long])
            elif which == "order":
                base.body["order_id"] = rng.choice([long_id, mb_long])
            else:
                base.body["lines"] = [{"sku": long_id, "category": "x",
                                       "amount_minor": base.body["amount_minor"], "quantity": 1}]
            self.emit(base)
        elif k == 7:
            base.body["amount_minor"] = rng.choice([0, -5])
            base.body.pop("lines", None)
            self.emit(base)
        elif k == 8:
            base.body["lines"] = [{"sku": "a", "category": "x", "amount_minor": -1, "quantity": 1},
                                  {"sku": "b", "category": "x",
                                   "amount_minor": base.body["amount_minor"] + 1, "quantity": 1}]
            self.emit(base)
        elif k == 9:
            base.body["lines"] = [{"sku": "a", "category": "x",
                                   "amount_minor": base.body["amount_minor"] - 1, "quantity": 1}]
            self.emit(base)
        elif k == 10:
            self.emit(Ev(self.eid(), cid, t, "referral",
                         {"referrer_id": self.super_referrer, "referee_id": cid + "-other"}))
        elif k == 11:
            self.emit(Ev(self.eid(), cid, int(self.now) + 25 * 3600 + rng.randrange(0, 400 * DAY),
                         "adjustment", {"points": 5, "reason": "r", "actor": "a"}))
        elif k == 12:
            self.emit(Ev(self.eid(), cid, t, "redemption",
                         {"redemption_id": "r", "points": rng.choice([0, -3]), "reward_id": "w"}))
        elif k == 13:
            self.emit(Ev(self.eid(), cid, t, "adjustment", {"reason": "nothing", "actor": "a"}))
        elif k == 14:
            self.emit(Ev(self.eid(), cid, t, rng.choice(["redemption", "redemption_cancel"]),
                         {"redemption_id": ""}))
        elif k == 15:
            self.emit(Ev(self.eid(), cid, t, "referral", {"referrer_id": "", "referee_id": cid}))
        elif k == 16:
            # oversize: raw bytes over 64 KiB, or exactly 64 KiB (fine)
            raw = serialize(base, rng, style={"snake": False, "strint": False})
            target = M.MAX_RAW + rng.choice([0, 1, 5000])
            pad = target - len(raw) - len(',"padding":""')
            raw = raw[:-1] + b',"padding":"' + b"p" * pad + b'"}'
            assert len(raw) == target
            self.emit_raw(raw, base)
        elif k == 17:
            # ids of exactly 128 bytes are fine
            base.eid = f"e{self.seed}-{self.n}-" + "z" * (128 - len(f"e{self.seed}-{self.n}-"))
            base.body["order_id"] = ok128
            self.emit(base)
        elif k == 18:
            # a dead letter, then its corrected resend under the same event_id
            bad = base.copy()
            bad.body["amount_minor"] = 0
            bad.body.pop("lines", None)
            self.emit(bad)
            self.emit(base)
        elif k == 19:
            self.emit(Ev(self.eid(), cid, t, "redemption",
                         {"redemption_id": "r-x", "points": 1, "reward_id": long_id}))
        elif k == 20:
            self.emit(Ev(self.eid(), cid, int(self.now) + 23 * 3600, "adjustment",
                         {"points": 7, "reason": "soon", "actor": "a"}))
        elif k == 21:
            self.emit_raw(b'["not", "an", "object"]')
        elif k == 22:
            self.emit_raw(serialize(base, rng, extra={"refund": {"orderId": "o", "amountMinor": 1}}))
        else:
            self.emit(Ev(self.eid(), cid, t, "referral",
                         {"referrer_id": long_id, "referee_id": cid}))

    def build(self):
        while len(self.lines) < self.n_events:
            self.step()
        # the super referrer: more than 10 qualifying referrals within a year
        for _ in range(12):
            self.cursor += self.rng.randrange(0, 5 * DAY)
            cid = self.new_customer()
            self.emit(Ev(self.eid(), cid, self.cursor, "referral",
                         {"referrer_id": self.super_referrer, "referee_id": cid}))
            self.emit(self.purchase(cid, self.cursor + 3600, amount=2500, lines=[]))
        return self


# ---------------------------------------------------------------- the engine


class Engine:
    def __init__(self, binary, data_dir):
        self.binary, self.data_dir = binary, data_dir
        self.proc = None
        self.port = None

    def ingest(self, path, batch_lines=None, stdin=False):
        cmd = [self.binary, "ingest", "--data-dir", self.data_dir, "--no-sync"]
        if batch_lines:
            cmd += ["--batch-lines", str(batch_lines)]
        cmd.append("-" if stdin else path)
        with open(path, "rb") as f:
            p = subprocess.run(cmd, stdin=f if stdin else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"ingest failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
        return p.stdout.decode()

    def serve(self):
        # Append mode: serve shares this file's offset, and the seek(0) below to read it
        # would otherwise have serve's next line overwrite the file's start.
        path = os.path.join(os.path.dirname(self.data_dir), "serve.log")
        open(path, "wb").close()
        self.log = open(path, "ab+")
        self.proc = subprocess.Popen([self.binary, "serve", "--data-dir", self.data_dir,
                                      "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            self.log.seek(0)
            m = re.search(rb"HTTP on [^:\s]+:(\d+)", self.log.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError("serve did not start: " + self.log.read().decode()[-2000:])

    def get(self, path):
        # One connection per request: a kept-alive connection to `serve` stalls ~40 ms per
        # request (small writes without TCP_NODELAY against the client's delayed ACK).
        for attempt in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", path, headers={"Connection": "close"})
                r = conn.getresponse()
                body = r.read()
                return r.status, (json.loads(body) if body else None)
            except (http.client.HTTPException, ConnectionError, OSError):
                if attempt == 2:
                    raise
                time.sleep(0.1)
            finally:
                conn.close()
        raise AssertionError

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------- comparison


def ts_of(v):
    if v is None:
        return None
    return M.parse_timestamp(v)[0]


def intv(v):
    return None if v is None else int(v)


class Checker:
    def __init__(self, seed, verbose_limit=60):
        self.seed = seed
        self.passed = 0
        self.failed = 0
        self.printed = 0
        self.limit = verbose_limit
        self.kinds = {}

    def report(self, who, T, field, engine, model):
        self.kinds[field] = self.kinds.get(field, 0) + 1
        if self.printed < self.limit:
            print(f"MISMATCH seed={self.seed} {who} as_of={T if T is None else iso(T)} "
                  f"{field}: engine={engine!r} model={model!r}")
            self.printed += 1

    def answer(self, ok):
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def compare_customer(eng, mod, chk, cid, T, frac=""):
    q = "?as_of=" + urllib.parse.quote(iso(T, frac))
    base = "/v1/customers/" + urllib.parse.quote(cid, safe="")
    too_long = len(cid.encode()) > M.MAX_ID
    for route in ("balance", "tier", "churn"):
        status, body = eng.get(base + "/" + route + q)
        want = getattr(mod, route)(cid, T)
        ok = True
        if too_long:
            if status != 400:
                chk.report(cid, T, route + ".http", status, 400)
                ok = False
            chk.answer(ok)
            continue
        if want is None:
            if status != 404:
                chk.report(cid, T, route + ".http", status, 404)
                ok = False
            chk.answer(ok)
            continue
        if status != 200:
            chk.report(cid, T, route + ".http", status, 200)
            chk.answer(False)
            continue
        if ts_of(body.get("asOf")) != T:
            chk.report(cid, T, route + ".asOf", body.get("asOf"), iso(T))
            ok = False
        if route == "balance":
            for f in ("available", "pending", "earned", "redeemed", "reversed", "adjustedOut",
                      "expired", "debt"):
                if intv(body.get(f)) != want[f]:
                    chk.report(cid, T, "balance." + f, body.get(f), want[f])
                    ok = False
            got = [(int(x.get("points", 0)), ts_of(x.get("expiresAt"))) for x in
                   body.get("expiringSoon", [])]
            exp = [(x["points"], x["expiresAt"]) for x in want["expiringSoon"]]
            if sorted(got) != sorted(exp) or [g[1] for g in got] != sorted(g[1] for g in got):
                chk.report(cid, T, "balance.expiringSoon", got, exp)
                ok = False
            e = {f: intv(body.get(f)) or 0 for f in ("earned", "available", "pending", "redeemed",
                                                     "reversed", "adjustedOut", "expired")}
            if e["earned"] != (e["available"] + e["pending"] + e["redeemed"] + e["reversed"] +
                               e["adjustedOut"] + e["expired"]):
                chk.report(cid, T, "balance.CONSERVATION", e, "earned = sum")
                ok = False
        elif route == "tier":
            checks = [("tier", body.get("tier", "BRONZE"), want["tier"]),
                      ("rollingSpendMinor", intv(body.get("rollingSpendMinor")), want["rollingSpendMinor"]),
                      ("validUntil", ts_of(body.get("validUntil")), want["validUntil"]),
                      ("nextTier", body.get("nextTier"), want["nextTier"]),
                      ("spendToNextTierMinor", intv(body.get("spendToNextTierMinor")),
                       want["spendToNextTierMinor"])]
            for f, g, w in checks:
                if g != w:
                    chk.report(cid, T, "tier." + f, g, w)
                    ok = False
        else:
            checks = [("riskLevel", body.get("riskLevel", "NEW"), want["riskLevel"]),
                      ("lastPurchaseAt", ts_of(body.get("lastPurchaseAt")), want["lastPurchaseAt"]),
                      ("daysSinceLastPurchase", intv(body.get("daysSinceLastPurchase")),
                       want["daysSinceLastPurchase"]),
                      ("expectedIntervalSeconds", intv(body.get("expectedIntervalSeconds")),
                       want["expectedIntervalSeconds"]),
                      ("purchases365d", intv(body.get("purchases365d")), want["purchases365d"]),
                      ("spend365dMinor", intv(body.get("spend365dMinor")), want["spend365dMinor"])]
            for f, g, w in checks:
                if g != w:
                    chk.report(cid, T, "churn." + f, g, w)
                    ok = False
            g, w = body.get("recencyRatio"), want["recencyRatio"]
            if (g is None) != (w is None) or (w is not None and abs(g - w) > 1e-9 * max(1, abs(w))):
                chk.report(cid, T, "churn.recencyRatio", g, w)
                ok = False
        chk.answer(ok)


def compare_statement(eng, mod, chk, cid):
    c = mod.customers.get(cid)
    want = c.statement if c else []
    status, body = eng.get("/v1/customers/" + urllib.parse.quote(cid, safe="") + "/statement")
    if status != 200:
        ok = not want and status == 404
        if not ok:
            chk.report(cid, None, "statement.http", status, 200 if want else 404)
        chk.answer(ok)
        return
    got = [(ts_of(e.get("time")), e.get("kind"), intv(e.get("points", 0)), e.get("eventId"))
           for e in body.get("entries", [])]
    ok = got == want
    if not ok:
        i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        chk.report(cid, None, f"statement[{i}]", got[i:i + 2], want[i:i + 2])
    chk.answer(ok)


def compare_event(eng, mod, chk, eid):
    status, body = eng.get("/v1/events/" + urllib.parse.quote(eid, safe=""))
    want = mod.event_status(eid)
    ok = True
    if len(eid.encode()) > M.MAX_ID:
        if status != 400:
            chk.report("event " + eid[:20], None, "event.http", status, 400)
            ok = False
        chk.answer(ok)
        return
    if status != 200:
        chk.report("event " + eid, None, "event.http", status, 200)
        chk.answer(False)
        return
    state = body.get("state", "EVENT_STATE_UNKNOWN")
    if state != want["state"]:
        chk.report("event " + eid, None, "event.state", state, want["state"])
        ok = False
    elif state == "EVENT_REJECTED" and body.get("rejectReason") not in want["reasons"]:
        chk.report("event " + eid, None, "event.rejectReason", body.get("rejectReason"),
                   want["reasons"])
        ok = False
    elif state == "EVENT_DEAD_LETTERED" and body.get("deadLetterReason") not in want["reasons"]:
        chk.report("event " + eid, None, "event.deadLetterReason", body.get("deadLetterReason"),
                   want["reasons"])
        ok = False
    if ok and want["t"] is not None and ts_of(body.get("effectiveAt")) != want["t"]:
        chk.report("event " + eid, None, "event.effectiveAt", body.get("effectiveAt"),
                   iso(want["t"]))
        ok = False
    if ok and want.get("entries") is not None:
        got = [(e.get("customerId", ""), e.get("kind"), int(e.get("points", 0)),
                int(e.get("effectiveAt", 0))) for e in body.get("entries", [])]
        if got != want["entries"]:
            chk.report("event " + eid, None, "event.entries", got, want["entries"])
            ok = False
    chk.answer(ok)


def compare_stats(eng, mod, chk, T):
    status, body = eng.get("/v1/stats?as_of=" + urllib.parse.quote(iso(T)))
    want = mod.stats(T)
    if status != 200:
        chk.report("stats", T, "stats.http", status, 200)
        chk.answer(False)
        return
    ok = True
    got = {f: intv(body.get(f)) for f in ("members", "purchasers", "pointsOutstanding", "earned",
                                         "redeemed", "expired")}
    got["perTier"] = {x.get("tier", "BRONZE"): intv(x.get("customers")) for x in body.get("perTier", [])}
    got["perRiskLevel"] = {x.get("riskLevel", "NEW"): intv(x.get("customers"))
                           for x in body.get("perRiskLevel", [])}
    for f in got:
        w = want[f]
        g = got[f]
        if isinstance(w, dict):
            g = {k: v for k, v in g.items() if v}
            w = {k: v for k, v in w.items() if v}
        if g != w:
            chk.report("stats", T, "stats." + f, g, w)
            ok = False
    g, w = body.get("repeatPurchaseRate", 0), want["repeatPurchaseRate"]
    if abs(g - w) > 1e-12:
        chk.report("stats", T, "stats.repeatPurchaseRate", g, w)
        ok = False
    chk.answer(ok)


def compare_list(eng, mod, chk, T, rng):
    """GET /v1/customers, filtered and paged: the model's customers in id order."""
    params = {"as_of": iso(T), "limit": str(rng.choice([1, 3, 17, 1000]))}
    want_filter = lambda tier, risk: True  # noqa: E731
    r = rng.random()
    if r < 0.35:
        lvl = rng.choice(["NEW", "ACTIVE", "COOLING", "AT_RISK", "CHURNED"])
        params["risk_level"] = lvl
        want_filter = lambda tier, risk: risk == lvl  # noqa: E731
    elif r < 0.7:
        tr = rng.choice(M.TIERS)
        params["tier"] = tr
        want_filter = lambda tier, risk: tier == tr  # noqa: E731
    want = []
    for cid in sorted(mod.customers, key=lambda x: x.encode()):
        b = mod.balance(cid, T)
        if b is None:
            continue
        tier, risk = mod.tier(cid, T)["tier"], mod.churn(cid, T)["riskLevel"]
        if want_filter(tier, risk):
            want.append((cid, tier, risk, b["available"]))
    got = []
    token = None
    for _ in range(len(want) + 2):
        q = dict(params)
        if token:
            q["page_token"] = token
        status, body = eng.get("/v1/customers?" + urllib.parse.urlencode(q))
        if status != 200:
            chk.report("list", T, "list.http", status, 200)
            chk.answer(False)
            return
        got += [(x.get("customerId"), x.get("tier", "BRONZE"), x.get("riskLevel", "NEW"),
                 intv(x.get("available", 0))) for x in body.get("customers", [])]
        token = body.get("nextPageToken")
        if not token:
            break
    ok = got == want
    if not ok:
        chk.report("list " + urllib.parse.urlencode(params), T, "list.customers",
                   [g for g in got if g not in want][:5], [w for w in want if w not in got][:5])
    chk.answer(ok)


def as_of_set(sc, cid, rng, per_customer):
    mod = sc.model
    c = mod.customers.get(cid)
    ts = set()
    if c is not None and c.snap_times:
        first = c.snap_times[0]
        ts.update((first - 1, first - DAY, first))
        cand = sorted(mod.interesting_times(cid))
        if len(cand) > per_customer:
            cand = rng.sample(cand, per_customer)
        ts.update(cand)
    ts.update((FAR_FUTURE, int(sc.now), sc.cursor))
    return sorted(t for t in ts if t > 0)


def run_seed(binary, seed, n_events, per_customer, workdir, keep):
    now = int(time.time())
    sc = Scenario(seed, n_events, now).build()
    d = tempfile.mkdtemp(prefix=f"model-{seed}-", dir=workdir)
    # The log is fed in one to three `ingest` runs (a file, or standard input), with
    # batches of random size: idempotency and clocks must hold across runs and batches.
    rng = random.Random(seed * 7919)
    cuts = sorted(rng.sample(range(1, len(sc.lines)), rng.choice([0, 1, 2])))
    chunks = [sc.lines[a:b] for a, b in zip([0] + cuts, cuts + [len(sc.lines)])]
    chk = Checker(seed)
    eng = Engine(binary, os.path.join(d, "data"))
    try:
        got = [0, 0, 0]
        for i, chunk in enumerate(chunks):
            path = os.path.join(d, f"events-{i}.jsonl")
            with open(path, "wb") as f:
                for line in chunk:
                    f.write(line + b"\n")
            out = eng.ingest(path, batch_lines=rng.choice([None, 1, 7, 64]),
                             stdin=rng.random() < 0.3)
            last = out.strip().splitlines()[-1]
            m = re.match(r"appended (\d+), duplicate (\d+), dead-lettered (\d+)", last)
            if not m:
                raise RuntimeError("ingest summary not understood: " + last)
            got = [g + int(x) for g, x in zip(got, m.groups())]
        got = tuple(got)
        cnt = sc.model.counts
        want = (cnt["appended"], cnt["duplicate"], cnt["dead"])
        if got != want:
            chk.report("ingest", None, "summary(appended,duplicate,dead)", got, want)
        chk.answer(got == want)
        eng.serve()
        ids = sorted(set(sc.model.customers) | set(sc.dead_only)) + [f"never-{seed}", "x" * 129]
        for cid in ids:
            for T in as_of_set(sc, cid, rng, per_customer):
                frac = rng.choice([".999", ".5"]) if rng.random() < 0.1 else ""
                compare_customer(eng, sc.model, chk, cid, T, frac)
        for cid in ids[:-1]:
            compare_statement(eng, sc.model, chk, cid)
        first = min(c.snap_times[0] for c in sc.model.customers.values() if c.snap_times)
        for T in sorted({first - 1, first, sc.cursor, int(sc.now), FAR_FUTURE} |
                        {rng.randrange(first, sc.cursor + 1) for _ in range(6)}):
            compare_stats(eng, sc.model, chk, T)
            compare_list(eng, sc.model, chk, T, rng)
        # as_of left out: the engine's now, which the answer names in asOf
        for cid in ids[:-1]:
            status, body = eng.get("/v1/customers/" + urllib.parse.quote(cid, safe="") + "/balance")
            if status == 200 and body.get("asOf"):
                compare_customer(eng, sc.model, chk, cid, ts_of(body["asOf"]))
            else:
                ok = (status == 404) == (sc.model.balance(cid, int(time.time())) is None)
                if not ok:
                    chk.report(cid, None, "balance(now).http", status, "200 or 404 per model")
                chk.answer(ok)
        eids = set()
        for (ev, _raw) in sc.events:
            if ev.eid:
                eids.add(ev.eid)
        eids = sorted(eids)
        for eid in eids:
            compare_event(eng, sc.model, chk, eid)
    finally:
        eng.stop()
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"seed {seed}: kept {d}")
    print(f"seed {seed}: {len(sc.lines)} lines, {len(sc.model.customers)} customers, "
          f"counts {sc.model.counts}; {chk.passed} passed, {chk.failed} failed"
          + (f" {chk.kinds}" if chk.kinds else ""))
    return chk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--events", type=int, default=None, help="lines per scenario")
    args = ap.parse_args()
    if args.quick:
        seeds, n_events, per_customer = args.seeds or 2, 400, 12
    else:
        seeds, n_events, per_customer = args.seeds or 5, 1500, 30
    n_events = args.events or n_events
    workdir = tempfile.mkdtemp(prefix="loyalty-model-")
    passed = failed = 0
    try:
        for i in range(seeds):
            seed = args.first_seed + i
            n = n_events if i % 2 == 0 else n_events // 3
            chk = run_seed(args.binary, seed, n, per_customer, workdir, args.keep)
            passed += chk.passed
            failed += chk.failed
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"model: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    def _term(signum, frame):
        raise SystemExit(1)
    signal.signal(signal.SIGTERM, _term)
    sys.exit(main())

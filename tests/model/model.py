"""An independent model of the loyalty rules (/work/shared/spec/rules.md), stdlib only.

Written from the spec, not from the engine: it decodes and validates JSON lines the way
rules.md section 10 and interfaces.md describe, applies them in log order, and answers
balance / tier / churn / event outcome queries as of any T.

Usage: m = Model(now=epoch_seconds); m.feed(raw_line_bytes) for each line in log order;
then m.balance(cid, T), m.tier(cid, T), m.churn(cid, T) (None = unknown customer),
m.event_status(event_id).
"""

import bisect
import calendar
import json
import re

DAY = 86400
YEAR = 365 * DAY
MAX_RAW = 64 * 1024
MAX_ID = 128
CURRENCY = "EUR"
CATEGORY_BP = {"gift_card": 0}
DEFAULT_CATEGORY_BP = 10000
TIERS = ["BRONZE", "SILVER", "GOLD", "PLATINUM"]
TIER_THRESHOLD = [0, 50000, 200000, 500000]
TIER_MULT_BP = [10000, 12500, 15000, 20000]
RETURN_WINDOW = 14 * DAY
REFERRAL_WINDOW = 90 * DAY
REFERRAL_MIN_AMOUNT = 2000
REFEREE_BONUS = 250
REFERRER_BONUS = 500
REFERRER_CAP = 10
CANCEL_WINDOW = 90 * DAY
EXPIRING_SOON = 30 * DAY
FUTURE_LIMIT = DAY
AMOUNT_LIMIT = 10 ** 12
DEBIT_KINDS = ("REFUND", "CLAWBACK", "ADJUSTMENT_DEBIT", "REDEMPTION")


class DeadLetter(Exception):
    def __init__(self, reasons):
        super().__init__(",".join(sorted(reasons)))
        self.reasons = set(reasons)


# ---------------------------------------------------------------- decoding (proto3 JSON)

_TS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(text):
    """RFC 3339 -> (seconds, nanos). Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("timestamp not a string")
    m = _TS.match(text)
    if not m:
        raise ValueError("bad timestamp")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 59):
        raise ValueError("bad timestamp field")
    mdays = [31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28, 31, 30, 31, 30,
             31, 31, 30, 31, 30, 31][mo - 1]
    if d > mdays:
        raise ValueError("bad day")
    frac = m.group(8) or ""
    nanos = int((frac + "000000000")[:9]) if frac else 0
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    tz = m.group(9)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs, nanos


def fmt_time(secs):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


def _field(obj, camel, snake):
    if camel in obj:
        return obj[camel]
    return obj.get(snake)


def _string(obj, camel, snake):
    v = _field(obj, camel, snake)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise DeadLetter({"UNDECODABLE"})
    return v


def _int(obj, camel, snake, bits=64):
    v = _field(obj, camel, snake)
    if v is None:
        return 0
    if isinstance(v, bool):
        raise DeadLetter({"UNDECODABLE"})
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and re.fullmatch(r"-?\d+", v):
        n = int(v)
    else:
        raise DeadLetter({"UNDECODABLE"})
    lim = 1 << (bits - 1)
    if not -lim <= n < lim:
        raise DeadLetter({"UNDECODABLE"})
    return n


PAYLOADS = [
    ("purchase", "purchase"), ("refund", "refund"), ("referral", "referral"),
    ("redemption", "redemption"), ("redemptionCancel", "redemption_cancel"),
    ("adjustment", "adjustment"),
]


def decode(raw):
    """raw bytes -> canonical event dict. Raises DeadLetter for undecodable input."""
    if len(raw) > MAX_RAW:
        raise DeadLetter({"MESSAGE_TOO_LARGE"})
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise DeadLetter({"UNDECODABLE"})
    if not isinstance(obj, dict):
        raise DeadLetter({"UNDECODABLE"})
    ev = {
        "event_id": _string(obj, "eventId", "event_id"),
        "customer_id": _string(obj, "customerId", "customer_id"),
        "source": _string(obj, "source", "source"),
        "occurred_at": None,
        "kind": None,
        "p": None,
    }
    ts = _field(obj, "occurredAt", "occurred_at")
    if ts is not None:
        try:
            ev["occurred_at"] = parse_timestamp(ts)
        except ValueError:
            raise DeadLetter({"UNDECODABLE"})
    found = [(k, s) for (k, s) in PAYLOADS if k in obj or s in obj]
    if len(found) > 1:
        raise DeadLetter({"UNDECODABLE"})
    if found:
        camel, snake = found[0]
        body = _field(obj, camel, snake)
        if not isinstance(body, dict):
            raise DeadLetter({"UNDECODABLE"})
        ev["kind"] = snake
        if snake == "purchase":
            lines_raw = _field(body, "lines", "lines")
            if lines_raw is None:
                lines_raw = []
            if not isinstance(lines_raw, list) or not all(isinstance(x, dict) for x in lines_raw):
                raise DeadLetter({"UNDECODABLE"})
            lines = tuple((_string(x, "sku", "sku"), _string(x, "category", "category"),
                           _int(x, "amountMinor", "amount_minor"), _int(x, "quantity", "quantity", 32))
                          for x in lines_raw)
            ev["p"] = (("order_id", _string(body, "orderId", "order_id")),
                       ("amount_minor", _int(body, "amountMinor", "amount_minor")),
                       ("currency", _string(body, "currency", "currency")),
                       ("lines", lines))
        elif snake == "refund":
            ev["p"] = (("order_id", _string(body, "orderId", "order_id")),
                       ("amount_minor", _int(body, "amountMinor", "amount_minor")))
        elif snake == "referral":
            ev["p"] = (("referrer_id", _string(body, "referrerId", "referrer_id")),
                       ("referee_id", _string(body, "refereeId", "referee_id")))
        elif snake == "redemption":
            ev["p"] = (("redemption_id", _string(body, "redemptionId", "redemption_id")),
                       ("points", _int(body, "points", "points")),
                       ("reward_id", _string(body, "rewardId", "reward_id")))
        elif snake == "redemption_cancel":
            ev["p"] = (("redemption_id", _string(body, "redemptionId", "redemption_id")),)
        elif snake == "adjustment":
            ev["p"] = (("points", _int(body, "points", "points")),
                       ("reason", _string(body, "reason", "reason")),
                       ("actor", _string(body, "actor", "actor")))
    return ev


def content_key(ev):
    return (ev["event_id"], ev["customer_id"], ev["occurred_at"], ev["source"], ev["kind"], ev["p"])


def validate(ev, now):
    """Section 10 checks on a decoded event; returns the set of reasons (empty = valid)."""
    r = set()
    if not ev["event_id"]:
        r.add("MISSING_EVENT_ID")
    if not ev["customer_id"]:
        r.add("MISSING_CUSTOMER_ID")
    if ev["occurred_at"] is None:
        r.add("MISSING_OCCURRED_AT")
    if ev["kind"] is None:
        r.add("MISSING_PAYLOAD")
    ids = [ev["event_id"], ev["customer_id"]]
    p = dict(ev["p"] or ())
    k = ev["kind"]
    if k in ("purchase", "refund"):
        if not p["order_id"]:
            r.add("MISSING_FIELD")
        if p["amount_minor"] <= 0:
            r.add("NON_POSITIVE_AMOUNT")
        ids.append(p["order_id"])
    if k == "purchase":
        if not p["currency"]:
            r.add("MISSING_FIELD")
        lines = p["lines"]
        for (sku, _cat, amt, _q) in lines:
            ids.append(sku)
            if amt < 0:
                r.add("NEGATIVE_LINE_AMOUNT")
        if lines and sum(l[2] for l in lines) != p["amount_minor"]:
            r.add("LINES_SUM_MISMATCH")
    if k == "referral":
        if not p["referrer_id"] or not p["referee_id"]:
            r.add("MISSING_FIELD")
        if p["referee_id"] != ev["customer_id"]:
            r.add("REFEREE_NOT_CUSTOMER")
        ids += [p["referrer_id"], p["referee_id"]]
    if k in ("redemption", "redemption_cancel"):
        if not p["redemption_id"]:
            r.add("MISSING_FIELD")
        ids.append(p["redemption_id"])
    if k == "redemption":
        if p["points"] <= 0:
            r.add("NON_POSITIVE_POINTS")
        ids.append(p["reward_id"])
    if k == "adjustment" and p["points"] == 0:
        r.add("ZERO_POINTS")
    # The project's documented limits (docs/rules.md, "Cases the spec leaves open").
    if k in ("purchase", "refund"):
        if p["amount_minor"] > AMOUNT_LIMIT or any(l[2] > AMOUNT_LIMIT for l in p.get("lines", ())):
            r.add("AMOUNT_TOO_LARGE")
    if k in ("redemption", "adjustment") and abs(p["points"]) > AMOUNT_LIMIT:
        r.add("POINTS_TOO_LARGE")
    if any(len(i.encode("utf-8")) > MAX_ID for i in ids):
        r.add("ID_TOO_LONG")
    if ev["occurred_at"] is not None:
        s, n = ev["occurred_at"]
        if (s, n) > (now + FUTURE_LIMIT, 0):
            r.add("OCCURRED_IN_FUTURE")
    return r


# ---------------------------------------------------------------- the ledger


class Lot:
    __slots__ = ("id", "points", "remaining", "available_at", "expires_at")

    def __init__(self, lot_id, points, remaining, available_at):
        self.id = lot_id
        self.points = points
        self.remaining = remaining
        self.available_at = available_at
        self.expires_at = available_at + YEAR


class Order:
    __slots__ = ("order_id", "t", "amount", "refunded", "points", "reversed", "lot_id", "seq")

    def __init__(self, order_id, t, amount, points, lot_id, seq):
        self.order_id = order_id
        self.t = t
        self.amount = amount
        self.refunded = 0
        self.points = points
        self.reversed = 0
        self.lot_id = lot_id
        self.seq = seq


class Customer:
    def __init__(self, cid):
        self.cid = cid
        self.clock = None
        self.lots = []  # creation order
        self.next_lot = 1
        self.debt = 0
        self.earned = 0
        self.redeemed = 0
        self.reversed = 0
        self.adjusted_out = 0
        self.expired_extra = 0  # cancelled portions of lots already expired
        self.orders = {}  # accepted orders by id
        self.order_list = []  # accepted orders, log order
        self.redemption_ids = set()  # every redemption id seen in an applied redemption
        self.redemptions = {}  # accepted: id -> dict(t, portions, cancelled)
        self.referral = None
        self.referrer_bonus_times = []
        self.accepted_purchases = 0
        self.statement = []  # (time, kind, signed points, event id), ledger order
        self.snap_times = []
        self.snaps = []

    # --- time
    def advance(self, t):
        self.clock = t if self.clock is None else max(self.clock, t)
        return self.clock

    # --- points
    def credit(self, points, available_at):
        self.earned += points
        paid = min(points, self.debt)
        self.debt -= paid
        lot = Lot(self.next_lot, points, points - paid, available_at)
        self.next_lot += 1
        self.lots.append(lot)
        return lot

    def lot(self, lot_id):
        for l in self.lots:
            if l.id == lot_id:
                return l
        return None

    def fifo(self, t, include_pending):
        c = [l for l in self.lots if t < l.expires_at and (include_pending or l.available_at <= t)]
        c.sort(key=lambda l: (l.expires_at, l.id))
        return c

    def take(self, amount, t, first_lot_id=None):
        """Refund / claw-back / negative adjustment: own lot, FIFO unexpired, then debt."""
        draws = []
        order = []
        if first_lot_id is not None:
            own = self.lot(first_lot_id)
            if own is not None and t < own.expires_at:
                order.append(own)
        order += [l for l in self.fifo(t, True) if l.id != first_lot_id]
        left = amount
        for l in order:
            if left == 0:
                break
            d = min(l.remaining, left)
            if d > 0:
                l.remaining -= d
                left -= d
                draws.append((l.id, d))
        self.debt += left
        return draws

    def available_at_t(self, t):
        return sum(l.remaining for l in self.lots if l.available_at <= t < l.expires_at) - self.debt

    # --- snapshots for answers as of T
    def snapshot(self):
        self.snap_times.append(self.clock)
        self.snaps.append({
            "lots": [(l.id, l.remaining, l.available_at, l.expires_at) for l in self.lots],
            "debt": self.debt, "earned": self.earned, "redeemed": self.redeemed,
            "reversed": self.reversed, "adjusted_out": self.adjusted_out,
            "expired_extra": self.expired_extra,
            "orders": [(o.t, o.amount, o.refunded) for o in self.order_list],
        })

    def snap_at(self, T):
        i = bisect.bisect_right(self.snap_times, T)
        return None if i == 0 else self.snaps[i - 1]


def tier_index(spend):
    t = 0
    for i, th in enumerate(TIER_THRESHOLD):
        if spend >= th:
            t = i
    return t


def rolling_spend(orders, s):
    return sum(a - r for (t, a, r) in orders if s - YEAR < t <= s)


def tier_of(orders, T):
    """orders: [(t, A, R)] all with t <= T. -> (tier index, valid_until or None)."""
    reached = []
    for (t, a, r) in orders:
        if a - r > 0 and T - YEAR < t <= T:
            reached.append((tier_index(rolling_spend(orders, t)), t))
    tier = max([x for x, _ in reached], default=0)
    vu = None
    if tier > 0:
        vu = max(t + YEAR for x, t in reached if x >= tier)
    return tier, vu


class Model:
    def __init__(self, now):
        self.now = now  # the engine clock at ingest, epoch seconds
        self.customers = {}
        self.applied = {}  # event_id -> content key
        self.status = {}  # event_id -> dict(state, reason(s), t)
        self.dlq_reasons = {}  # event_id -> set of reasons over its dead letters
        self.counts = {"appended": 0, "duplicate": 0, "dead": 0, "accepted": 0, "rejected": 0}
        self.seq = 0

    def cust(self, cid):
        c = self.customers.get(cid)
        if c is None:
            c = self.customers[cid] = Customer(cid)
        return c

    # ------------------------------------------------------------ one input line
    def feed(self, raw):
        """Returns ('dead', reasons) | ('duplicate', None) | ('accepted'|'rejected', reason)."""
        try:
            ev = decode(raw)
        except DeadLetter as e:
            self.counts["dead"] += 1
            return ("dead", e.reasons, None)
        reasons = validate(ev, self.now)
        eid = ev["event_id"]
        key = content_key(ev)
        if eid and eid in self.applied:
            if self.applied[eid] == key and not reasons:
                self.counts["duplicate"] += 1
                return ("duplicate", None, eid)
            if self.applied[eid] != key:
                reasons.add("EVENT_ID_CONFLICT")
        if reasons:
            self.counts["dead"] += 1
            if eid:
                self.dlq_reasons.setdefault(eid, set()).update(reasons)
            return ("dead", reasons, eid)
        self.counts["appended"] += 1
        self.seq += 1
        self.applied[eid] = key
        state, reason, t = self.apply(ev)
        self.counts[state] += 1
        self.status[eid] = {"state": state, "reason": reason, "t": t, "entries": self.entries}
        for (cid, kind, points, at) in self.entries:
            sign = -1 if kind in DEBIT_KINDS else 1
            self.customers[cid].statement.append((at, kind, sign * points, eid))
        return (state, reason, eid)

    # ------------------------------------------------------------ the rules
    def apply(self, ev):
        c = self.cust(ev["customer_id"])
        t = c.advance(ev["occurred_at"][0])
        p = dict(ev["p"])
        k = ev["kind"]
        self.entries = []  # (customer, kind, points, effective time) this event writes
        reason = getattr(self, "do_" + k)(c, t, p, ev)
        if reason:
            self.entry(c, "REJECTED", 0)
        c.snapshot()
        return ("rejected" if reason else "accepted"), reason, t

    def entry(self, c, kind, points):
        self.entries.append((c.cid, kind, points, c.clock))

    def do_purchase(self, c, t, p, ev):
        if p["currency"] != CURRENCY:
            return "WRONG_CURRENCY"
        if p["order_id"] in c.orders:
            return "DUPLICATE_ORDER"
        if p["lines"]:
            e = sum(amt * CATEGORY_BP.get(cat, DEFAULT_CATEGORY_BP) for (_s, cat, amt, _q) in p["lines"])
        else:
            e = p["amount_minor"] * 10000
        tier, _ = tier_of([(o.t, o.amount, o.refunded) for o in c.order_list], t)
        pts = e * TIER_MULT_BP[tier] // 10_000_000_000
        lot_id = None
        if pts > 0:
            lot_id = c.credit(pts, t + RETURN_WINDOW).id
        self.entry(c, "PURCHASE", pts)
        o = Order(p["order_id"], t, p["amount_minor"], pts, lot_id, self.seq)
        c.orders[o.order_id] = o
        c.order_list.append(o)
        c.accepted_purchases += 1
        ref = c.referral
        if c.accepted_purchases == 1 and ref is not None and ref["state"] == "open":
            if t <= ref["t_ref"] + REFERRAL_WINDOW and p["amount_minor"] >= REFERRAL_MIN_AMOUNT:
                ref["state"] = "qualified"
                ref["order_id"] = o.order_id
                ref["t_p"] = t
                ref["referee_lot"] = c.credit(REFEREE_BONUS, t + RETURN_WINDOW).id
                self.entry(c, "REFEREE_BONUS", REFEREE_BONUS)
                rr = self.cust(ref["referrer"])
                t_b = t if rr.clock is None else max(t, rr.clock)
                recent = [x for x in rr.referrer_bonus_times if t_b - YEAR < x <= t_b]
                if len(recent) >= REFERRER_CAP:
                    ref["referrer_lot"] = None
                else:
                    rr.advance(t_b)
                    ref["referrer_lot"] = rr.credit(REFERRER_BONUS, t_b + RETURN_WINDOW).id
                    rr.referrer_bonus_times.append(t_b)
                    self.entry(rr, "REFERRER_BONUS", REFERRER_BONUS)
                    rr.snapshot()
            else:
                ref["state"] = "unqualified"
                self.entry(c, "REFERRAL_UNQUALIFIED", 0)
        return None

    def do_refund(self, c, t, p, ev):
        o = c.orders.get(p["order_id"])
        if o is None:
            return "UNKNOWN_ORDER"
        if t >= o.t + YEAR:
            return "REFUND_WINDOW_CLOSED"
        if o.refunded + p["amount_minor"] > o.amount:
            return "REFUND_EXCEEDS_ORDER"
        o.refunded += p["amount_minor"]
        target = -((-o.points * o.refunded) // o.amount)  # ceil
        rev = target - o.reversed
        o.reversed = target
        if rev > 0:
            c.take(rev, t, o.lot_id)
            c.reversed += rev
        self.entry(c, "REFUND", rev)
        ref = c.referral
        if (ref is not None and ref["state"] == "qualified" and ref["order_id"] == o.order_id
                and o.refunded == o.amount and t < ref["t_p"] + RETURN_WINDOW):
            c.take(REFEREE_BONUS, t, ref["referee_lot"])
            c.reversed += REFEREE_BONUS
            self.entry(c, "CLAWBACK", REFEREE_BONUS)
            if ref["referrer_lot"] is not None:
                rr = self.cust(ref["referrer"])
                rr.advance(t)
                rr.take(REFERRER_BONUS, rr.clock, ref["referrer_lot"])
                rr.reversed += REFERRER_BONUS
                self.entry(rr, "CLAWBACK", REFERRER_BONUS)
                rr.snapshot()
            ref["state"] = "clawed_back"
        return None

    def do_referral(self, c, t, p, ev):
        if p["referrer_id"] == p["referee_id"]:
            return "SELF_REFERRAL"
        if c.accepted_purchases > 0:
            return "ALREADY_CUSTOMER"
        if c.referral is not None:
            return "ALREADY_REFERRED"
        c.referral = {"referrer": p["referrer_id"], "t_ref": t, "state": "open"}
        self.entry(c, "REFERRAL_RECORDED", 0)
        return None

    def do_redemption(self, c, t, p, ev):
        rid = p["redemption_id"]
        if rid in c.redemption_ids:
            return "DUPLICATE_REDEMPTION"
        c.redemption_ids.add(rid)
        pts = p["points"]
        if c.available_at_t(t) < pts:
            return "INSUFFICIENT_POINTS"
        left = pts
        portions = []
        for l in c.fifo(t, False):
            if left == 0:
                break
            d = min(l.remaining, left)
            if d > 0:
                l.remaining -= d
                left -= d
                portions.append((l.id, d))
        assert left == 0
        c.redeemed += pts
        self.entry(c, "REDEMPTION", pts)
        c.redemptions[rid] = {"t": t, "portions": portions, "cancelled": False}
        return None

    def do_redemption_cancel(self, c, t, p, ev):
        r = c.redemptions.get(p["redemption_id"])
        if r is None or r["cancelled"]:
            return "UNKNOWN_REDEMPTION"
        if t >= r["t"] + CANCEL_WINDOW:
            return "CANCEL_WINDOW_CLOSED"
        r["cancelled"] = True
        self.entry(c, "REDEMPTION_CANCEL", sum(x for _l, x in r["portions"]))
        for (lot_id, pts) in r["portions"]:
            l = c.lot(lot_id)
            c.redeemed -= pts
            if t >= l.expires_at:
                c.expired_extra += pts
            else:
                paid = min(pts, c.debt)
                c.debt -= paid
                l.remaining += pts - paid
        return None

    def do_adjustment(self, c, t, p, ev):
        pts = p["points"]
        if pts > 0:
            c.credit(pts, t)
            self.entry(c, "ADJUSTMENT_CREDIT", pts)
        else:
            c.take(-pts, t)
            c.adjusted_out += -pts
            self.entry(c, "ADJUSTMENT_DEBIT", -pts)
        return None

    # ------------------------------------------------------------ answers as of T
    def known(self, cid, T):
        c = self.customers.get(cid)
        return c is not None and c.snap_at(T) is not None

    def balance(self, cid, T):
        c = self.customers.get(cid)
        s = c.snap_at(T) if c else None
        if s is None:
            return None
        avail = pending = expired = 0
        soon = []
        for (lid, rem, av, ex) in s["lots"]:
            if T < av:
                pending += rem
            elif T < ex:
                avail += rem
                if rem > 0 and ex <= T + EXPIRING_SOON:
                    soon.append((ex, lid, rem))
            else:
                expired += rem
        soon.sort()
        return {
            "available": avail - s["debt"], "pending": pending, "earned": s["earned"],
            "redeemed": s["redeemed"], "reversed": s["reversed"],
            "adjustedOut": s["adjusted_out"], "expired": expired + s["expired_extra"],
            "debt": s["debt"],
            "expiringSoon": [{"points": rem, "expiresAt": ex} for (ex, _lid, rem) in soon],
        }

    def tier(self, cid, T):
        c = self.customers.get(cid)
        s = c.snap_at(T) if c else None
        if s is None:
            return None
        orders = s["orders"]
        tier, vu = tier_of(orders, T)
        spend = rolling_spend(orders, T)
        out = {"tier": TIERS[tier], "rollingSpendMinor": spend, "validUntil": vu,
               "nextTier": TIERS[tier + 1] if tier < 3 else None,
               "spendToNextTierMinor": max(0, TIER_THRESHOLD[tier + 1] - spend) if tier < 3 else 0}
        return out

    def churn(self, cid, T):
        c = self.customers.get(cid)
        s = c.snap_at(T) if c else None
        if s is None:
            return None
        orders = s["orders"]
        pos = sorted([o for o in orders if o[1] - o[2] > 0], key=lambda o: o[0])  # stable
        out = {"purchases365d": sum(1 for o in pos if T - YEAR < o[0] <= T),
               "spend365dMinor": rolling_spend(orders, T),
               "riskLevel": "NEW", "lastPurchaseAt": None, "daysSinceLastPurchase": None,
               "expectedIntervalSeconds": None, "recencyRatio": None}
        if not pos:
            return out
        last = pos[-1][0]
        tail = pos[-6:]
        if len(tail) == 1:
            exp = 30 * DAY
        else:
            exp = (tail[-1][0] - tail[0][0]) // (len(tail) - 1)
        exp = max(exp, DAY)
        since = T - last
        days = since // DAY
        if days >= 180:
            risk = "CHURNED"
        elif since >= 3 * exp:
            risk = "AT_RISK"
        elif 2 * since >= 3 * exp:
            risk = "COOLING"
        else:
            risk = "ACTIVE"
        out.update({"riskLevel": risk, "lastPurchaseAt": last, "daysSinceLastPurchase": days,
                    "expectedIntervalSeconds": exp, "recencyRatio": since / exp})
        return out

    def stats(self, T):
        """The program-wide figures of GET /v1/stats as of T (interfaces.md)."""
        out = {"members": 0, "purchasers": 0, "repeat": 0, "pointsOutstanding": 0, "earned": 0,
               "redeemed": 0, "expired": 0, "perTier": {k: 0 for k in TIERS},
               "perRiskLevel": {k: 0 for k in ("NEW", "ACTIVE", "COOLING", "AT_RISK", "CHURNED")}}
        for cid in self.customers:
            b = self.balance(cid, T)
            if b is None:
                continue
            n = len(self.customers[cid].snap_at(T)["orders"])
            out["members"] += 1
            out["purchasers"] += n >= 1
            out["repeat"] += n >= 2
            out["pointsOutstanding"] += b["available"] + b["pending"]
            for f in ("earned", "redeemed", "expired"):
                out[f] += b[f]
            out["perTier"][self.tier(cid, T)["tier"]] += 1
            out["perRiskLevel"][self.churn(cid, T)["riskLevel"]] += 1
        out["repeatPurchaseRate"] = out["repeat"] / out["purchasers"] if out["purchasers"] else 0.0
        del out["repeat"]
        return out

    def event_status(self, eid):
        """-> dict(state=ACCEPTED|REJECTED|DEAD_LETTERED|UNKNOWN, reasons=set, t)"""
        st = self.status.get(eid)
        if st is not None:
            if st["state"] == "accepted":
                return {"state": "EVENT_ACCEPTED", "reasons": None, "t": st["t"],
                        "entries": st["entries"]}
            return {"state": "EVENT_REJECTED", "reasons": {st["reason"]}, "t": st["t"],
                    "entries": st["entries"]}
        if eid in self.dlq_reasons:
            return {"state": "EVENT_DEAD_LETTERED", "reasons": self.dlq_reasons[eid], "t": None}
        return {"state": "EVENT_STATE_UNKNOWN", "reasons": None, "t": None}

    def interesting_times(self, cid):
        """as_of candidates for a customer: entry times and rule boundaries."""
        c = self.customers.get(cid)
        if c is None:
            return set()
        ts = set()
        for t in c.snap_times:
            ts.update((t - 1, t, t + 1))
        for l in c.lots:
            for x in (l.available_at, l.expires_at, l.expires_at - EXPIRING_SOON):
                ts.update((x - 1, x, x + 1))
        for o in c.order_list:
            for x in (o.t + YEAR, o.t + 180 * DAY, o.t + 14 * DAY, o.t + 90 * DAY):
                ts.update((x - 1, x, x + 1))
        for t in sorted(set(c.snap_times))[-40:]:
            ch = self.churn(cid, t)
            if ch and ch["lastPurchaseAt"] is not None:
                last, exp = ch["lastPurchaseAt"], ch["expectedIntervalSeconds"]
                for x in (last + (3 * exp + 1) // 2, last + 3 * exp):
                    ts.update((x - 1, x, x + 1))
        return ts

-- The PostgreSQL peer of `loyalty bench postgres` (docs/benchmarks.md): the same
-- events applied the way a careful team would build it on PostgreSQL 15. One call
-- of apply_batch(jsonb) per batch of events, in one transaction (the caller's
-- statement), with synchronous_commit on.
--
-- What it does per event: the event id is the primary key of `events`
-- (a re-sent event is a duplicate, nothing else happens); undecodable input is
-- kept in `dead_letters`; purchases create an order and a lot (pending 14 days,
-- expiring 365 days after), pay debt first and pay referral bonuses; refunds
-- reverse ceil(P x R / A) from the order's lot, then FIFO, then debt; redemptions
-- are accepted iff available - debt covers them and consume lots FIFO by
-- expiry (portions kept for cancels); cancels give the portions back; positive
-- adjustments are lots, negative ones draw FIFO then debt; referrals are
-- recorded once per referee. Balances keep the running totals.
--
-- Simpler than the engine (so the comparison favours PostgreSQL): no tiers or
-- category multipliers (1 point per 100 minor units), no hash chain, no signals,
-- no per-customer clock beyond max(occurred_at, last seen), no referral caps.

SET client_min_messages = warning;
DROP TABLE IF EXISTS events, dead_letters, balances, orders, lots, redemptions,
  redemption_portions, referrals CASCADE;

CREATE TABLE events (
  event_id    text PRIMARY KEY,
  customer_id text NOT NULL,
  occurred_at timestamptz NOT NULL,
  kind        text NOT NULL,
  body        jsonb NOT NULL,
  outcome     text NOT NULL,
  points      bigint NOT NULL
);
-- A customer's events (statements; "already a customer" for referrals).
CREATE INDEX events_customer ON events (customer_id);
CREATE TABLE dead_letters (
  id     bigserial PRIMARY KEY,
  raw    text NOT NULL,
  reason text NOT NULL
);
CREATE TABLE balances (
  customer_id text PRIMARY KEY,
  clock       timestamptz NOT NULL,
  earned      bigint NOT NULL DEFAULT 0,
  redeemed    bigint NOT NULL DEFAULT 0,
  reversed    bigint NOT NULL DEFAULT 0,
  adjusted_out bigint NOT NULL DEFAULT 0,
  debt        bigint NOT NULL DEFAULT 0,
  purchases   bigint NOT NULL DEFAULT 0
);
CREATE TABLE lots (
  lot_id       bigserial PRIMARY KEY,
  customer_id  text NOT NULL,
  points_left  bigint NOT NULL,
  available_at timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL
);
-- FIFO by expiry, then creation, among lots with points left.
CREATE INDEX lots_fifo ON lots (customer_id, expires_at, lot_id) WHERE points_left > 0;
CREATE TABLE orders (
  order_id        text PRIMARY KEY,
  customer_id     text NOT NULL,
  occurred_at     timestamptz NOT NULL,
  amount_minor    bigint NOT NULL,
  points          bigint NOT NULL,
  refunded_minor  bigint NOT NULL DEFAULT 0,
  reversed_points bigint NOT NULL DEFAULT 0,
  lot_id          bigint NOT NULL
);
CREATE TABLE redemptions (
  redemption_id text PRIMARY KEY,
  customer_id   text NOT NULL,
  occurred_at   timestamptz NOT NULL,
  points        bigint NOT NULL,
  accepted      boolean NOT NULL,
  cancelled     boolean NOT NULL DEFAULT false
);
CREATE TABLE redemption_portions (
  redemption_id text NOT NULL,
  lot_id        bigint NOT NULL,
  points        bigint NOT NULL
);
CREATE INDEX redemption_portions_id ON redemption_portions (redemption_id);
CREATE TABLE referrals (
  referee_id  text PRIMARY KEY,
  referrer_id text NOT NULL,
  occurred_at timestamptz NOT NULL
);

-- Draws `want` points from the customer's unexpired lots (pending ones only when
-- `include_pending`), FIFO, starting with `first_lot` if given; returns what it
-- could not draw. Records portions when `redemption` is given.
CREATE OR REPLACE FUNCTION draw_points(cust text, want bigint, at_t timestamptz,
                                       include_pending boolean, first_lot bigint,
                                       redemption text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  lot record;
  take bigint;
BEGIN
  IF want <= 0 THEN RETURN 0; END IF;
  IF first_lot IS NOT NULL THEN
    SELECT lot_id, points_left INTO lot FROM lots
      WHERE lot_id = first_lot AND points_left > 0 AND expires_at > at_t FOR UPDATE;
    IF FOUND THEN
      take := least(want, lot.points_left);
      UPDATE lots SET points_left = points_left - take WHERE lot_id = lot.lot_id;
      want := want - take;
    END IF;
  END IF;
  FOR lot IN SELECT lot_id, points_left FROM lots
      WHERE customer_id = cust AND points_left > 0 AND expires_at > at_t
        AND (include_pending OR available_at <= at_t)
      ORDER BY expires_at, lot_id FOR UPDATE LOOP
    EXIT WHEN want <= 0;
    take := least(want, lot.points_left);
    UPDATE lots SET points_left = points_left - take WHERE lot_id = lot.lot_id;
    IF redemption IS NOT NULL THEN
      INSERT INTO redemption_portions VALUES (redemption, lot.lot_id, take);
    END IF;
    want := want - take;
  END LOOP;
  RETURN want;
END $$;

-- A credit: pays debt first, the rest is a new lot. Returns the lot.
CREATE OR REPLACE FUNCTION credit(cust text, pts bigint, avail timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  d bigint;
  pay bigint;
  id bigint;
BEGIN
  SELECT debt INTO d FROM balances WHERE customer_id = cust FOR UPDATE;
  pay := least(coalesce(d, 0), pts);
  UPDATE balances SET debt = debt - pay, earned = earned + pts WHERE customer_id = cust;
  INSERT INTO lots (customer_id, points_left, available_at, expires_at)
    VALUES (cust, pts - pay, avail, avail + interval '365 days') RETURNING lot_id INTO id;
  RETURN id;
END $$;

CREATE OR REPLACE FUNCTION apply_batch(batch jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  e jsonb;
  cust text;
  t timestamptz;
  outcome text;
  pts bigint;
  o record;
  r record;
  ref record;
  new_lot bigint;
  left_over bigint;
  avail bigint;
  target bigint;
  n_applied int := 0;
  n_dup int := 0;
  n_dead int := 0;
BEGIN
  FOR e IN SELECT * FROM jsonb_array_elements(batch) LOOP
    IF e->>'k' = 'dead' THEN
      INSERT INTO dead_letters (raw, reason) VALUES (e->>'raw', e->>'why');
      n_dead := n_dead + 1;
      CONTINUE;
    END IF;
    cust := e->>'c';
    -- Idempotency: the event id is the primary key (inserted below, with the outcome).
    IF EXISTS (SELECT 1 FROM events WHERE event_id = e->>'id') THEN
      n_dup := n_dup + 1;
      CONTINUE;
    END IF;
    n_applied := n_applied + 1;
    INSERT INTO balances (customer_id, clock) VALUES (cust, to_timestamp((e->>'t')::bigint))
      ON CONFLICT (customer_id) DO UPDATE
        SET clock = greatest(balances.clock, excluded.clock)
      RETURNING clock INTO t;
    outcome := 'ACCEPTED';
    pts := 0;
    CASE e->>'k'
    WHEN 'purchase' THEN
      IF e->>'cur' <> 'EUR' THEN
        outcome := 'WRONG_CURRENCY';
      ELSE
        pts := (e->>'amt')::bigint / 100;
        INSERT INTO orders (order_id, customer_id, occurred_at, amount_minor, points, lot_id)
          VALUES (e->>'o', cust, t, (e->>'amt')::bigint, pts, 0)
          ON CONFLICT (order_id) DO NOTHING;
        IF NOT FOUND THEN
          outcome := 'DUPLICATE_ORDER';
          pts := 0;
        ELSE
          new_lot := credit(cust, pts, t + interval '14 days');
          UPDATE orders SET lot_id = new_lot WHERE order_id = e->>'o';
          UPDATE balances SET purchases = purchases + 1 WHERE customer_id = cust;
          -- A referee's first purchase of 2,000 or more within 90 days pays both.
          SELECT * INTO ref FROM referrals WHERE referee_id = cust;
          IF FOUND AND t <= ref.occurred_at + interval '90 days' AND (e->>'amt')::bigint >= 2000
             AND (SELECT purchases FROM balances WHERE customer_id = cust) = 1 THEN
            PERFORM credit(cust, 250, t + interval '14 days');
            INSERT INTO balances (customer_id, clock) VALUES (ref.referrer_id, t)
              ON CONFLICT (customer_id) DO UPDATE SET clock = greatest(balances.clock, excluded.clock);
            PERFORM credit(ref.referrer_id, 500, t + interval '14 days');
          END IF;
        END IF;
      END IF;
    WHEN 'refund' THEN
      SELECT * INTO o FROM orders WHERE order_id = e->>'o' FOR UPDATE;
      IF NOT FOUND OR o.customer_id <> cust THEN
        outcome := 'UNKNOWN_ORDER';
      ELSIF t >= o.occurred_at + interval '365 days' THEN
        outcome := 'REFUND_WINDOW_CLOSED';
      ELSIF o.refunded_minor + (e->>'amt')::bigint > o.amount_minor THEN
        outcome := 'REFUND_EXCEEDS_ORDER';
      ELSE
        target := (o.points * (o.refunded_minor + (e->>'amt')::bigint) + o.amount_minor - 1)
                  / o.amount_minor;
        pts := target - o.reversed_points;
        UPDATE orders SET refunded_minor = refunded_minor + (e->>'amt')::bigint,
                          reversed_points = target WHERE order_id = o.order_id;
        left_over := draw_points(cust, pts, t, true, o.lot_id, NULL);
        UPDATE balances SET reversed = reversed + pts, debt = debt + left_over
          WHERE customer_id = cust;
        pts := -pts;
      END IF;
    WHEN 'redemption' THEN
      pts := (e->>'pts')::bigint;
      SELECT coalesce(sum(points_left), 0) INTO avail FROM lots
        WHERE customer_id = cust AND points_left > 0 AND available_at <= t AND expires_at > t;
      avail := avail - (SELECT debt FROM balances WHERE customer_id = cust);
      IF EXISTS (SELECT 1 FROM redemptions WHERE redemption_id = e->>'r') THEN
        outcome := 'DUPLICATE_REDEMPTION';
        pts := 0;
      ELSIF avail < pts THEN
        outcome := 'INSUFFICIENT_POINTS';
        INSERT INTO redemptions VALUES (e->>'r', cust, t, pts, false);
        pts := 0;
      ELSE
        INSERT INTO redemptions VALUES (e->>'r', cust, t, pts, true);
        PERFORM draw_points(cust, pts, t, false, NULL, e->>'r');
        UPDATE balances SET redeemed = redeemed + pts WHERE customer_id = cust;
        pts := -pts;
      END IF;
    WHEN 'cancel' THEN
      SELECT * INTO r FROM redemptions WHERE redemption_id = e->>'r' FOR UPDATE;
      IF NOT FOUND OR NOT r.accepted OR r.cancelled OR r.customer_id <> cust THEN
        outcome := 'UNKNOWN_REDEMPTION';
      ELSIF t >= r.occurred_at + interval '90 days' THEN
        outcome := 'CANCEL_WINDOW_CLOSED';
      ELSE
        UPDATE redemptions SET cancelled = true WHERE redemption_id = r.redemption_id;
        UPDATE lots l SET points_left = l.points_left + p.points
          FROM redemption_portions p
          WHERE p.redemption_id = r.redemption_id AND l.lot_id = p.lot_id;
        UPDATE balances SET redeemed = redeemed - r.points WHERE customer_id = cust;
        pts := r.points;
      END IF;
    WHEN 'referral' THEN
      IF e->>'rr' = cust THEN
        outcome := 'SELF_REFERRAL';
      ELSIF EXISTS (SELECT 1 FROM events WHERE customer_id = cust) THEN
        outcome := 'ALREADY_CUSTOMER';
      ELSE
        INSERT INTO referrals VALUES (cust, e->>'rr', t) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN outcome := 'ALREADY_REFERRED'; END IF;
      END IF;
    WHEN 'adjustment' THEN
      pts := (e->>'pts')::bigint;
      IF pts > 0 THEN
        PERFORM credit(cust, pts, t);
      ELSE
        left_over := draw_points(cust, -pts, t, true, NULL, NULL);
        UPDATE balances SET adjusted_out = adjusted_out - pts, debt = debt + left_over
          WHERE customer_id = cust;
      END IF;
    ELSE
      outcome := 'UNKNOWN_KIND';
    END CASE;
    INSERT INTO events VALUES (e->>'id', cust, to_timestamp((e->>'t')::bigint), e->>'k', e,
                               outcome, pts);
  END LOOP;
  RETURN format('%s %s %s', n_applied, n_dup, n_dead);
END $$;

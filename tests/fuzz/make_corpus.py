#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/ (docs/fuzzing.md).

  tests/fuzz/make_corpus.py

Events are written once as Python dicts (proto field names) and printed both as
proto3 JSON (lowerCamelCase) and as binary protobuf (text format through
`protoc --encode`), so the JSON and protobuf seeds hold the same events. The
edge cases follow rules.md section 10. Rerunning rewrites the same files.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")

T0 = 1767614400  # 2026-01-05T12:00:00Z; the check_input clock is 2026-02-01T00:00:00Z


def ts(seconds, nanos=0):
    return {"seconds": seconds, "nanos": nanos}


def ev(eid, cust, payload_name, payload, at=T0, source="shop-1"):
    e = {"event_id": eid, "customer_id": cust, "occurred_at": ts(at), "source": source}
    if payload_name:
        e[payload_name] = payload
    return e


ID129 = "x" * 129
ID128 = "y" * 128

# name -> event dict (valid and rule-breaking but decodable events).
EVENTS = {
    "purchase": ev("e-1", "c-42", "purchase", {"order_id": "o-1", "amount_minor": 12550, "currency": "EUR"}),
    "purchase_lines": ev("e-2", "c-42", "purchase", {
        "order_id": "o-2", "amount_minor": 3000, "currency": "EUR",
        "lines": [{"sku": "s-1", "category": "food", "amount_minor": 1000, "quantity": 2},
                  {"sku": "s-2", "category": "toys", "amount_minor": 2000, "quantity": 1}]}),
    "refund": ev("e-3", "c-42", "refund", {"order_id": "o-1", "amount_minor": 500}),
    "referral": ev("e-4", "c-7", "referral", {"referrer_id": "c-42", "referee_id": "c-7"}),
    "redemption": ev("e-5", "c-42", "redemption", {"redemption_id": "r-1", "points": 100, "reward_id": "mug"}),
    "redemption_cancel": ev("e-6", "c-42", "redemption_cancel", {"redemption_id": "r-1"}),
    "adjustment_plus": ev("e-7", "c-42", "adjustment", {"points": 40, "reason": "goodwill", "actor": "ops"}),
    "adjustment_minus": ev("e-8", "c-42", "adjustment", {"points": -25, "reason": "fix", "actor": "ops"}),
    "nanos": dict(ev("e-9", "c-42", "refund", {"order_id": "o-1", "amount_minor": 1}), occurred_at=ts(T0, 123456789)),
    "id_128": ev(ID128, ID128, "redemption_cancel", {"redemption_id": ID128}),
    # rules.md section 10
    "missing_event_id": ev("", "c-42", "adjustment", {"points": 1}),
    "missing_customer_id": ev("e-10", "", "adjustment", {"points": 1}),
    "missing_occurred_at": {"event_id": "e-11", "customer_id": "c-42", "adjustment": {"points": 1}},
    "no_payload": ev("e-12", "c-42", None, None),
    "empty_order_id": ev("e-13", "c-42", "purchase", {"order_id": "", "amount_minor": 1, "currency": "EUR"}),
    "empty_currency": ev("e-14", "c-42", "purchase", {"order_id": "o", "amount_minor": 1, "currency": ""}),
    "empty_referrer": ev("e-15", "c-7", "referral", {"referrer_id": "", "referee_id": "c-7"}),
    "empty_redemption_id": ev("e-16", "c-42", "redemption", {"redemption_id": "", "points": 5}),
    "event_id_too_long": ev(ID129, "c-42", "adjustment", {"points": 1}),
    "sku_too_long": ev("e-17", "c-42", "purchase", {"order_id": "o", "amount_minor": 1, "currency": "EUR",
                                                     "lines": [{"sku": ID129, "amount_minor": 1}]}),
    "zero_amount": ev("e-18", "c-42", "purchase", {"order_id": "o", "amount_minor": 0, "currency": "EUR"}),
    "negative_refund": ev("e-19", "c-42", "refund", {"order_id": "o", "amount_minor": -5}),
    "zero_points_redemption": ev("e-20", "c-42", "redemption", {"redemption_id": "r", "points": 0}),
    "zero_points_adjustment": ev("e-21", "c-42", "adjustment", {"points": 0}),
    "negative_line": ev("e-22", "c-42", "purchase", {"order_id": "o", "amount_minor": 1, "currency": "EUR",
                                                      "lines": [{"sku": "s", "amount_minor": -1}, {"sku": "t", "amount_minor": 2}]}),
    "lines_mismatch": ev("e-23", "c-42", "purchase", {"order_id": "o", "amount_minor": 10, "currency": "EUR",
                                                       "lines": [{"sku": "s", "amount_minor": 9}]}),
    "lines_int64_sum": ev("e-24", "c-42", "purchase", {"order_id": "o", "amount_minor": 10, "currency": "EUR",
                                                        "lines": [{"amount_minor": 9223372036854775807},
                                                                  {"amount_minor": 9223372036854775807}]}),
    "referee_not_customer": ev("e-25", "c-7", "referral", {"referrer_id": "c-42", "referee_id": "c-8"}),
    "in_future": ev("e-26", "c-42", "adjustment", {"points": 1}, at=1769904000 + 86401),
    "future_limit": ev("e-27", "c-42", "adjustment", {"points": 1}, at=1769904000 + 86400),
    "amount_too_large": ev("e-28", "c-42", "refund", {"order_id": "o", "amount_minor": 1000000000001}),
    "points_too_large": ev("e-29", "c-42", "adjustment", {"points": -1000000000001}),
    "int64_min_points": ev("e-30", "c-42", "adjustment", {"points": -9223372036854775808}),
    "year_0001": ev("e-31", "c-42", "adjustment", {"points": 1}, at=-62135596800),
    "year_9999": ev("e-32", "c-42", "adjustment", {"points": 1}, at=253402300799),
}


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def to_json_value(key, value):
    if key == "occurred_at":
        s, n = value["seconds"], value["nanos"]
        import datetime
        t = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=s)
        frac = f".{n:09d}" if n else ""
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}{frac}Z"
    if isinstance(value, dict):
        return {camel(k): to_json_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json_value(key, v) for v in value]
    if isinstance(value, int) and abs(value) > 2**53:
        return str(value)  # int64 beyond a double's precision, as a string
    return value


def to_text(value, indent=""):
    out = []
    for k, v in value.items():
        items = v if isinstance(v, list) else [v]
        for item in items:
            if isinstance(item, dict):
                out.append(f"{indent}{k} {{\n{to_text(item, indent + '  ')}{indent}}}\n")
            elif isinstance(item, str):
                out.append(f"{indent}{k}: {json.dumps(item)}\n")
            else:
                out.append(f"{indent}{k}: {item}\n")
    return "".join(out)


def encode(event):
    return subprocess.run(
        ["protoc", f"-I{ROOT}/proto", "-I/usr/include", "--encode=loyalty.v1.Event",
         "loyalty/v1/event.proto"], input=to_text(event).encode(), check=True,
        capture_output=True).stdout


# JSON spellings the proto3 JSON mapping accepts (or must refuse), beyond the above.
EXTRA_JSON = {
    "snake_case_names": '{"event_id":"e-40","customer_id":"c-42","occurred_at":"2026-01-05T10:00:00Z","purchase":{"order_id":"o","amount_minor":"12550","currency":"EUR"}}',
    "int64_as_string": '{"eventId":"e-41","customerId":"c-42","occurredAt":"2026-01-05T10:00:00.000Z","redemption":{"redemptionId":"r","points":"100"}}',
    "offset_time": '{"eventId":"e-42","customerId":"c-42","occurredAt":"2026-01-05T12:00:00+02:00","adjustment":{"points":3}}',
    "unknown_fields": '{"eventId":"e-43","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","future":{"a":[1,2,{"b":null}]},"refund":{"orderId":"o","amountMinor":5,"extra":true}}',
    "leading_blanks": ' \t\r\n{"eventId":"e-44","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":1}}',
    "wrong_type": '{"eventId":"e-45","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","purchase":{"orderId":"o","amountMinor":true,"currency":"EUR"}}',
    "bad_timestamp": '{"eventId":"e-46","customerId":"c-42","occurredAt":"2026-13-45T99:00:00Z","adjustment":{"points":1}}',
    "year_10000": '{"eventId":"e-47","customerId":"c-42","occurredAt":"10000-01-01T00:00:00Z","adjustment":{"points":1}}',
    "two_payloads": '{"eventId":"e-48","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":1},"refund":{"orderId":"o","amountMinor":1}}',
    "int64_overflow": '{"eventId":"e-49","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":"9223372036854775808"}}',
    "float_points": '{"eventId":"e-50","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":1.5e3}}',
    "null_payload": '{"eventId":"e-51","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","purchase":null}',
    "escapes": '{"eventId":"e-\\u00e9\\ud83d\\ude00","customerId":"c\\n42","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":1,"reason":"\\"q\\""}}',
    "lone_surrogate": '{"eventId":"e-\\ud800","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":1}}',
    "duplicate_key": '{"eventId":"e-52","eventId":"e-53","customerId":"c-42","occurredAt":"2026-01-05T10:00:00Z","adjustment":{"points":1}}',
    "deep_unknown": '{"eventId":"e-54","x":' + "[" * 200 + "]" * 200 + "}",
    "empty_object": "{}",
    "truncated": '{"eventId":"e-55","customerId":"c-4',
    "not_an_object": '["eventId","e-56"]',
    "null": "null",
}

# Binary inputs beyond the encoded events.
EXTRA_PROTOBUF = {
    "empty": b"",
    "unknown_field": encode(EVENTS["purchase"]) + b"\xa8\x06\x07",  # field 101, varint 7
    "truncated": encode(EVENTS["purchase_lines"])[:-3],
    "bad_utf8": b"\x0a\x02\xc3\x28",  # event_id with invalid UTF-8
    # occurred_at { seconds: 1 nanos: 1000000000 }: decodes, but is not a valid time
    "nanos_out_of_range": b"\x1a\x08\x08\x01\x10\x80\x94\xeb\xdc\x03",
    "group_tag": b"\x0b\x0c",
}

# Request targets for the HTTP query target (path and query string, as sent).
QUERIES = {
    "balance": "/v1/customers/alice/balance?as_of=2026-01-20T00:00:00Z",
    "balance_lower": "/v1/customers/alice/balance?as_of=2026-01-20t00:00:00z",
    "tier": "/v1/customers/alice/tier",
    "churn": "/v1/customers/bob/churn?as_of=2027-06-01T00:00:00%2B02:00",
    "statement": "/v1/customers/alice/statement?from=2026-01-01T00:00:00Z&to=2026-12-31T00:00:00Z",
    "statement_reversed": "/v1/customers/alice/statement?from=2027-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    "customers": "/v1/customers?limit=1",
    "customers_filter": "/v1/customers?tier=SILVER&risk_level=ACTIVE&limit=1000",
    "customers_page": "/v1/customers?limit=1&page_token=313736383532313630303a616c696365",
    "customers_bad_token": "/v1/customers?page_token=zz",
    # as_of beyond a Timestamp: was a 200 with an empty body (docs/fuzzing.md)
    "customers_token_max": "/v1/customers?page_token=" + b"9223372036854775807:alice".hex(),
    "customers_token_min": "/v1/customers?page_token=" + b"-9223372036854775808:".hex(),
    "customers_limit_0": "/v1/customers?limit=0",
    "stats": "/v1/stats?as_of=0001-01-01T00:00:00Z",
    "stats_max": "/v1/stats?as_of=9999-12-31T23:59:59Z",
    "event": "/v1/events/ev-1?wait_ms=0",
    "event_dead": "/v1/events/dl-1",
    "after": "/v1/customers/alice/balance?after=loyalty.events:0:2",
    "after_colon_topic": "/v1/stats?after=a:b:0:1",
    "after_bad": "/v1/stats?after=:0:-1",
    "after_seq": "/v1/stats?after_seq=2&wait_ms=10",
    "after_seq_max": "/v1/stats?after_seq=9223372036854775807",
    "progress": "/v1/progress",
    "slash_id": "/v1/customers/shop%2Falice/balance",
    "long_id": "/v1/customers/" + "a" * 129 + "/balance",
    "empty_params": "/v1/customers/alice/balance?as_of=&after=&after_seq=&wait_ms=",
    "repeated_param": "/v1/customers/alice/balance?as_of=2026-01-20T00:00:00Z&as_of=bad",
    "unknown_route": "/v2/nothing?x=1",
}


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    for name, e in EVENTS.items():
        j = json.dumps(to_json_value("", e), separators=(",", ":"))
        b = encode(e)
        write("event_json", name + ".json", j)
        write("event_protobuf", name + ".pb", b)
        write("check_input", name + ".json", j)
        write("check_input", name + ".pb", b)
    for name, j in EXTRA_JSON.items():
        write("event_json", name + ".json", j)
        write("check_input", name + ".json", j)
    for name, b in EXTRA_PROTOBUF.items():
        write("event_protobuf", name + ".pb", b)
        write("check_input", name + ".pb", b)
    for name, q in QUERIES.items():
        write("http_query", name + ".txt", q)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Smoke check of `loyalty bench` (CTest `bench: smoke ...`).

Runs `LOYALTY bench SCENARIO --json FILE ARGS...` and checks that it exits 0 and that
the JSON names the expected scenario results, each with the expected keys holding
positive numbers. A key written KEY>=0 may also hold 0: a rate over a window in
which the work beside it may finish nothing (under the sanitizers, on a loaded
machine, the ingestion beside a one-second query level may not commit a batch).

usage: bench_check.py LOYALTY SCENARIO RESULT:KEY[,KEY...] ... -- ARGS...
Exit 77 (CTest's skip) when the scenario reports a missing prerequisite
(PostgreSQL not installed). It runs in a temporary directory of its own with a
relative --work-dir, as users give one (the PostgreSQL peer once failed on one).
"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    argv = sys.argv[1:]
    sep = argv.index("--") if "--" in argv else len(argv)
    loyalty, scenario, expectations, extra = argv[0], argv[1], argv[2:sep], argv[sep + 1:]
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [os.path.abspath(loyalty), "bench", scenario, "--json", out, "--work-dir", "w"] + extra
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=300, cwd=tmp)
        print(proc.stdout)
        if "not installed" in proc.stdout:
            print("SKIP: a prerequisite is missing")
            return 77
        if proc.returncode != 0:
            print(f"FAIL: exit {proc.returncode}")
            return 1
        with open(out) as f:
            doc = json.load(f)
    for key in ("args", "machine", "scenarios", "ratios", "targets", "failures"):
        if key not in doc:
            print(f"FAIL: no '{key}' in the JSON")
            return 1
    bad = []
    for exp in expectations:
        name, keys = exp.split(":", 1)
        result = doc["scenarios"].get(name)
        if result is None:
            bad.append(f"no scenario result '{name}'")
            continue
        for key in keys.split(","):
            may_be_zero = key.endswith(">=0")
            key = key[:-3] if may_be_zero else key
            v = result.get(key)
            if not isinstance(v, (int, float)) or not (v >= 0 if may_be_zero else v > 0):
                want = "a number >= 0" if may_be_zero else "a positive number"
                bad.append(f"{name}.{key} = {v!r}, not {want}")
    if bad:
        print("FAIL:\n  " + "\n  ".join(bad))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

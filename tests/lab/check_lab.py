#!/usr/bin/env python3
"""Suite `lab`: runs one ueq-lab experiment in --quick mode into a temporary
folder and checks what it wrote: well-formed CSV (a header, rows, the same
number of fields in each), JSON with the parameters, the seed and the
machine, and every chart (SVG, and PNG where written). Extra checks:
  list      `ueq-lab list` names the experiments, coalescing first; bad
            command lines exit 2; a run where every point is skipped exits 1
  warnings  a deliberately unreachable rate is warned about (stderr and a
            note); legends carry units and say what rate 0 means
  coalescing  no event lost; the same seed gives the same workloads, another
            seed different ones
  trace     --trace exports the per-stage trace: every stage of a delivery

Every run: rows carry the load average (load_1m), the JSON its start, max
and end, and a quick run's chart titles say so.

usage: check_lab.py UEQ_LAB (list | EXPERIMENT | trace | warnings)
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

LAB = sys.argv[1]
WHAT = sys.argv[2]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAILED: " + msg, flush=True)
    return cond


def run(args, expect=0):
    p = subprocess.run([LAB] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=280)
    sys.stdout.write(p.stdout)
    if p.returncode != expect:
        sys.stdout.write(p.stderr)
    check(p.returncode == expect,
          "ueq-lab %s exited %d, expected %d" % (" ".join(args), p.returncode, expect))
    return p


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    name = os.path.basename(path)
    if not check(len(rows) >= 2, name + ": a header and at least one row"):
        return [], []
    header = rows[0]
    check(all(h for h in header), name + ": no empty column name")
    check(len(set(header)) == len(header), name + ": column names are unique")
    for i, r in enumerate(rows[1:]):
        check(len(r) == len(header),
              "%s row %d: %d fields, header has %d" % (name, i + 1, len(r), len(header)))
    return header, rows[1:]


def check_chart(out, c):
    for key, magic in (("svg", None), ("png", b"\x89PNG\r\n\x1a\n")):
        f = c.get(key)
        if f is None:
            check(key == "png", "chart without an SVG: %r" % c)
            continue
        path = os.path.join(out, f)
        if not check(os.path.isfile(path) and os.path.getsize(path) > 0, "chart file " + f):
            continue
        with open(path, "rb") as fh:
            head = fh.read(256)
        if magic:
            check(head.startswith(magic), f + " is a PNG")
        else:
            text = head.lstrip()
            check(text.startswith(b"<?xml") or text.startswith(b"<svg"), f + " is an SVG")
            with open(path, "rb") as fh:
                check(b"</svg>" in fh.read(), f + " is a whole SVG")
    check(os.path.isfile(os.path.join(out, c["script"])), "chart script " + c["script"])


def check_run(name, out, seed, extra=()):
    run(["run", name, "--quick", "--seed", str(seed), "--out", out] + list(extra))
    header, rows = read_csv(os.path.join(out, name + ".csv"))
    for col in ("point", "seed", "load_1m"):
        check(col in header, "%s.csv has a %s column" % (name, col))
    if "seed" in header:
        check(all(r[header.index("seed")] == str(seed) for r in rows), "seed column is the seed")
    with open(os.path.join(out, name + ".json")) as f:
        meta = json.load(f)
    for key in ("experiment", "summary", "ueq_version", "seed", "quick", "command", "machine",
                "params", "points", "files", "charts", "notes", "skipped", "rows"):
        check(key in meta, "JSON has key " + key)
    check(meta.get("experiment") == name, "JSON names the experiment")
    check(meta.get("seed") == seed, "JSON carries the seed")
    check(meta.get("quick") is True, "JSON says quick")
    for key in ("cpu_model", "nproc", "kernel", "compiler", "build_type"):
        check(key in meta.get("machine", {}), "JSON machine has " + key)
    params = meta.get("params", {})
    check(isinstance(params, dict) and params, "JSON has the parameters")
    for p, vals in params.items():
        check(isinstance(vals, list) and vals, "parameter %s has values" % p)
        check(p in header, "%s.csv has the parameter column %s" % (name, p))
    check(len(meta.get("rows", [])) == len(rows), "JSON rows match the CSV")
    for table, fname in meta.get("files", {}).items():
        read_csv(os.path.join(out, fname))
    load = meta.get("load_average_1m", {})
    check(all(k in load for k in ("start", "max", "end")), "JSON has the load average")
    check(len(meta.get("charts", [])) >= 1, "at least one chart")
    for c in meta.get("charts", []):
        check_chart(out, c)
        with open(os.path.join(out, c["script"])) as fh:
            check("--quick run" in fh.read(), c["script"] + ": the title says it is a quick run")
    return header, rows, meta


def main():
    if WHAT == "list":
        p = run(["list"])
        names = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
        check(names[:1] == ["coalescing"], "coalescing is listed first")
        for n in ("coalescing", "mailboxes", "wake_policy", "backends", "facade"):
            check(n in names, n + " is listed")
        with tempfile.TemporaryDirectory() as d:
            run(["run", "nosuch", "--out", d], expect=2)
            run(["run", "coalescing", "--param", "nosuch=1", "--out", d], expect=2)
            run(["run", "coalescing", "--quick"], expect=2)
            run(["run", "coalescing", "--param", "ring=1,2", "--out", d], expect=2)
            run(["describe", "coalescing"])
            p = run(["run", "coalescing", "--param", "ring=0", "--no-charts", "--out", d],
                    expect=1)
            check("nothing ran" in p.stderr, "a run that skipped every point says so")
    elif WHAT == "warnings":
        with tempfile.TemporaryDirectory() as d:
            p = run(["run", "coalescing", "--quick", "--sweep", "rate=1000000000,0", "--param",
                     "producers=1", "--param", "ring=256", "--param", "seconds=0.05", "--out", d])
            check("missed its target rate" in p.stderr, "an unreachable rate is warned about")
            with open(os.path.join(d, "coalescing.json")) as f:
                meta = json.load(f)
            missed = [n for n in meta["notes"] if "missed its target rate" in n]
            check(len(missed) == 1 and missed[0].startswith("warning: "),
                  "the JSON notes the missed rate once (the unpaced point has no target)")
            scripts = "".join(open(os.path.join(d, c["script"])).read() for c in meta["charts"])
            check("posts/s per producer" in scripts, "legends give the rate's unit")
            check("rate=0 (unpaced" in scripts, "legends say what rate 0 means")
            check(" dt 2 " in scripts, "series get distinct dash types")
    elif WHAT == "trace":
        with tempfile.TemporaryDirectory() as d:
            _, _, meta = check_run("backends", d, 3, ["--trace", "--param", "backend=epoll"])
            header, rows = read_csv(os.path.join(d, "backends-trace.csv"))
            stage, ident, point = (header.index(c) for c in ("stage", "id", "point"))
            order = ["host_event", "tap", "post", "wake", "consume"]
            seen = {}
            complete = 0
            for r in rows:
                key = (r[point], r[ident])
                if r[stage] == "consume":
                    chain = seen.pop(key, [])
                    # A wake before the host event belongs to the previous
                    # delivery: its waiter took the message on its re-check
                    # while still registered, and was woken after consuming.
                    while chain[:1] == ["wake"]:
                        chain = chain[1:]
                    # Every stage before the consume, in order (a delivery
                    # found before the waiter slept has no wake).
                    want = [s for s in order[:-1] if s in chain]
                    check(chain == want, "stages of %s in order: %s" % (key, chain))
                    complete += ["host_event", "tap", "post"] == chain[:3]
                else:
                    seen.setdefault(key, []).append(r[stage])
            check(complete >= 100, "whole deliveries traced: %d" % complete)
            check(meta.get("trace_records", 0) > 0, "JSON counts the trace records")
            read_csv(os.path.join(d, "backends-stages.csv"))
            check(any(c["svg"] == "backends-stages.svg" for c in meta["charts"]),
                  "stage chart")
    else:
        with tempfile.TemporaryDirectory() as d:
            header, rows, meta = check_run(WHAT, d, 7)
            if WHAT == "coalescing":
                lost = header.index("lost")
                check(all(float(r[lost]) == 0 for r in rows), "no event lost")
                check(os.path.getsize(os.path.join(d, "coalescing-dump.txt")) > 0, "CEQ dumps")
                dig = header.index("workload_digest")
                with tempfile.TemporaryDirectory() as d2, tempfile.TemporaryDirectory() as d3:
                    _, rows2, _ = check_run(WHAT, d2, 7)
                    _, rows3, _ = check_run(WHAT, d3, 8)
                    check([r[dig] for r in rows] == [r[dig] for r in rows2],
                          "the same seed gives the same workloads")
                    check(all(a[dig] != b[dig] for a, b in zip(rows, rows3)),
                          "another seed gives other workloads")
            if WHAT == "backends":
                backends = set(r[header.index("backend")] for r in rows)
                check("epoll" in backends, "host epoll rows")
                if "io_uring" not in backends:
                    check(any("io_uring" in s["why"] for s in meta["skipped"]),
                          "io_uring rows missing, and the output says why")
    print("%d passed, %d failed" % (0 if failures else 1, 1 if failures else 0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

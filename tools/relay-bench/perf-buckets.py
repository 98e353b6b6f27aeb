#!/usr/bin/env python3
"""Shares of a frame-pointer profile of the served relay bench, by part.

Build and record (see docs/benchmarks.md, "fourth session"):

    RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=/tmp/fp-target \
      CARGO_PROFILE_BENCH_DEBUG=1 cargo bench -p imagegate-api --bench upstream_relay --no-run
    perf record -F 1999 --call-graph fp -o perf.data -p <pid> -- sleep 8
    perf script -i perf.data -F comm,tid,ip,sym | tools/relay-bench/perf-buckets.py

Each sample goes to the first part below whose test its thread name or
stack passes, so the order matters: the SQLite threads first, then the
parts nearest the leaf. `--show PART` lists the leaf functions inside one
part instead.
"""

import collections
import signal
import sys

# Quiet when piped into head.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)

PARTS = [
    ("SQLite threads", lambda comm, st: comm.startswith("sqlx-sqlite")),
    ("object put", lambda comm, st: any("put_opts" in f for f in st)),
    ("relay client call", lambda comm, st: any("imagegate_upstream" in f for f in st)),
    ("sqlx, async side", lambda comm, st: any("sqlx" in f for f in st)),
    ("grouped admission and completion", lambda comm, st: any("group_complete" in f or "group_admit" in f for f in st)),
    ("hyper client connection", lambda comm, st: any("hyper::client" in f or "hyper_util::client" in f for f in st)),
    ("handler", lambda comm, st: any("imagegate_api" in f for f in st)),
    ("the run (store, hub)", lambda comm, st: any("run_batch" in f for f in st)),
    ("HTTP server connections", lambda comm, st: any("hyper::proto::h1::dispatch" in f for f in st)),
    ("scheduler, no frame of ours", lambda comm, st: any("tokio::runtime" in f for f in st)),
]


def samples(lines):
    comm, stack = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, stack
            comm, stack = None, []
        elif not line[0].isspace():
            comm, stack = line.split()[0], []
        else:
            parts = line.strip().split(None, 1)
            stack.append(parts[1] if len(parts) > 1 else "?")
    if comm is not None:
        yield comm, stack


def part_of(comm, stack):
    return next((name for name, test in PARTS if test(comm, stack)), "other")


def main():
    show = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--show" else None
    counts, total = collections.Counter(), 0
    for comm, stack in samples(sys.stdin):
        part = part_of(comm, stack)
        if show is None:
            counts[part] += 1
            total += 1
        elif part == show:
            counts[stack[0][:90] if stack else "?"] += 1
            total += 1
    for name, n in counts.most_common(25):
        print(f"{100 * n / max(total, 1):6.2f}%  {name}")


if __name__ == "__main__":
    main()

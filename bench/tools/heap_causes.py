#!/usr/bin/env python3
"""Per-program live heap by cause, from two heaptrack runs (bench/tools/heaptrack.sh) at two
program counts: for each cause, (bytes at the large count - bytes at the small count) divided by
the difference in programs. Bytes are what the program asked malloc for (no chunk overhead).

Usage: heap_causes.py SMALL_DIR SMALL_N LARGE_DIR LARGE_N
(each DIR holds heaptrack.zst; its leaked.stacks is made with heaptrack_print if missing)"""
import os, re, subprocess, sys
from collections import defaultdict

# (cause, regex on the whole stack, root first); the first that matches wins.
CAUSES = [
    ("crossbeam list-channel block (31 slots, made at a channel's first message)", r"list::Block<.*>::new|list::Block\$LT\$.*::new"),
    ("crossbeam channel bodies (cache-padded counters, wakers)", r"crossbeam_channel::counter::new|crossbeam_channel::waker|crossbeam_channel::flavors::(array|zero)::Channel"),
    ("thread: glibc dynamic TLS vector", r"_dl_allocate_tls|allocate_dtv"),
    ("thread: std bookkeeping + the boxed closure that holds the Worker", r"Builder::spawn|spawn_unchecked|thread_info|spawnhook|__cxa_thread_atexit|CONTEXT::__rust_std_internal_init_fn|thread_name_string"),
    ("config: the core's own copy (Config::clone in Supervisor::new)", r"Config as core::clone::Clone|Config\$u20\$as\$u20\$core..clone..Clone"),
    ("config: the worker's Arc<ProgramConfig> (add_program)", r"Supervisor::add_program.*alloc::sync::Arc|Supervisor::new;[^;]*(rdl_alloc|alloc::alloc)"),
    ("status snapshot (publish, ProgramStatus, listener names)", r"Worker::publish|ProgramStatus"),
    ("waiters/outbox vectors kept with capacity (answer_waiters, begin_stop)", r"answer_waiters|begin_stop|Worker::answer"),
    ("log thread: per-pipe state (pump tables, LogHub::open)", r"logs::pump|LogHub::open|Outputs::open|logs::Shared"),
    ("listeners (pool entries, addresses)", r"listener::"),
    ("reaper routes (pid -> exit channel)", r"reaper::"),
    ("spawn (prepared argv/env kept)", r"spawn::|spawn_process"),
]

def stacks(d):
    f = os.path.join(d, "leaked.stacks")
    if not os.path.exists(f):
        subprocess.run(["heaptrack_print", "--flamegraph-cost-type", "leaked", "-F", f,
                        os.path.join(d, "heaptrack.zst")], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
    out = defaultdict(int)
    for line in open(f):
        stack, _, cost = line.rstrip("\n").rpartition(" ")
        cost = int(cost)
        if not cost:
            continue
        for name, rx in CAUSES:
            if re.search(rx, stack):
                out[name] += cost
                break
        else:
            out["other"] += cost
        out["(total)"] += cost
    return out

small, n_small, large, n_large = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
a, b = stacks(small), stacks(large)
per = {k: (b.get(k, 0) - a.get(k, 0)) / (n_large - n_small) for k in set(a) | set(b)}
print(f"| cause | {n_small} programs (B) | {n_large} programs (B) | per program (B) |")
print("|---|---|---|---|")
for k in sorted(per, key=lambda k: (k == "(total)", -per[k])):
    print(f"| {k} | {a.get(k, 0)} | {b.get(k, 0)} | {per[k]:.0f} |")

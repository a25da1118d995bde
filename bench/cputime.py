#!/usr/bin/env python3
"""CPU time (user + system) of commands measured side by side.

    bench/cputime.py [--rounds R] [--runs N] [--warmup W] [--json FILE] \
        NAME CMD [NAME CMD]...

Each CMD (split as a shell would, run without a shell) runs N times per
round, the commands interleaved one run each, and the round's order
rotated, so that a machine whose speed drifts (a shared VM) moves every
command alike. The CPU time of a run is what wait4(2) reports for the
process and the descendants it waited for: a tracer's thread counts, as
does strace's own process. Prints a Markdown table of medians: wall time,
user + system time, and the CPU ratio and difference to the first command.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time


def run_once(argv):
    start = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"cputime.py: {shlex.join(argv)} exited {p.returncode}")
    return wall, ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("pairs", nargs="+")
    a = ap.parse_args()
    if len(a.pairs) % 2:
        sys.exit("cputime.py: give NAME CMD pairs")
    names = a.pairs[0::2]
    cmds = [shlex.split(c) for c in a.pairs[1::2]]
    for argv in cmds:
        for _ in range(a.warmup):
            run_once(argv)
    walls = {n: [] for n in names}
    cpus = {n: [] for n in names}
    k = len(names)
    for r in range(a.rounds):
        order = [(r + i) % k for i in range(k)]
        for _ in range(a.runs):
            for i in order:
                wall, cpu = run_once(cmds[i])
                walls[names[i]].append(wall)
                cpus[names[i]].append(cpu)
    med = {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in names}
    base = med[names[0]][1]
    print(f"| command | wall (median) | user + sys (median) | CPU vs {names[0]} |")
    print("|---|---|---|---|")
    for n in names:
        w, c = med[n]
        diff = "" if n == names[0] else f"{c / base:.2f}×, {1000 * (c - base):+.1f} ms"
        print(f"| {n} | {1000 * w:.1f} ms | {1000 * c:.1f} ms | {diff} |")
    print(f"\n({a.rounds} rounds × {a.runs} runs of each, interleaved)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"walls": walls, "cpus": cpus, "commands": dict(zip(names, a.pairs[1::2]))}, f)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Whole-process A/B timing: two commands run in turn (A B A B ...), each pair's ratio taken.

    python3 scripts/ab.py [-n RUNS] [--warmup W] 'COMMAND A' 'COMMAND B'

Each command is one string split as a shell splits words (no shell runs it). After W warm-up
runs of each (default 1), RUNS pairs (default 20); for each command the median cpu time (user
+ system, the kernel's accounting of the finished process through wait4), wall time and peak
RSS, then the medians of the pairwise ratios A/B with their 10th and 90th percentiles. Pairing
keeps a ratio meaningful when the machine's speed drifts during the run. Output of the
commands is discarded; a command that fails stops the run.
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time


def once(cmd):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"ab.py: `{shlex.join(cmd)}` exited with {code}")
    return ru.ru_utime + ru.ru_stime, wall, ru.ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args()
    a_cmd, b_cmd = shlex.split(args.a), shlex.split(args.b)
    for _ in range(args.warmup):
        once(a_cmd)
        once(b_cmd)
    a, b = [], []
    for _ in range(args.runs):
        a.append(once(a_cmd))
        b.append(once(b_cmd))
    med = statistics.median
    for name, cmd, xs in (("A", a_cmd, a), ("B", b_cmd, b)):
        print(f"{name} {shlex.join(cmd)}: cpu {med(x[0] for x in xs) * 1000:.1f} ms, "
              f"wall {med(x[1] for x in xs) * 1000:.1f} ms, peak {med(x[2] for x in xs):.1f} MiB")
    for i, what in ((0, "cpu"), (1, "wall"), (2, "peak RSS")):
        ratios = sorted(x[i] / y[i] for x, y in zip(a, b) if y[i] > 0)
        if not ratios:
            continue
        q = lambda f: ratios[min(len(ratios) - 1, int(f * len(ratios)))]
        print(f"A/B {what}: median {med(ratios):.2f}x (p10 {q(0.1):.2f}x, p90 {q(0.9):.2f}x) "
              f"over {len(ratios)} pairs")
    print(f"load average: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()

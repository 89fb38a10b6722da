"""Summarise a py-spy raw profile (collapsed stacks): time per thread, and per function within
each thread, inclusive, as a share of that thread's samples.

    python bench/profile_summary.py PROFILE.txt [--top 25] [--active]

``--active`` leaves out samples whose leaf is a wait (the thread idle).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

IDLE = re.compile(r"\b(wait|select|poll|epoll|sleep|_wait_for_tstate_lock|acquire)\b")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--active", action="store_true")
    args = ap.parse_args()
    per_thread: Counter[str] = Counter()
    funcs: dict[str, Counter[str]] = defaultdict(Counter)
    for line in open(args.profile, encoding="utf-8", errors="replace"):
        stack, _, n = line.rstrip().rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        if args.active and frames and IDLE.search(frames[-1].split(" (")[0]):
            continue
        per_thread[thread] += int(n)
        for f in {fr.split(" (")[0] + " (" + fr.split(" (")[1].split(":")[0] + ")" if " (" in fr else fr
                  for fr in frames}:
            funcs[thread][f] += int(n)
    total = sum(per_thread.values())
    for thread, n in per_thread.most_common():
        print(f"\n== {thread}: {n} samples ({n / total:.0%})")
        for f, c in funcs[thread].most_common(args.top):
            print(f"  {c / n:6.1%}  {f}")


if __name__ == "__main__":
    main()

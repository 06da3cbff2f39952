#!/usr/bin/env python3
"""Summarises an Nsight Compute CSV (--csv --page raw --metrics gpu__time_duration.sum) of
consecutive kernels: finds one decode step (from one `gather_rows_kernel` embedding launch to the
next), then prints each kernel family's launches, total and mean time in that step, and the step's
kernel-time total. Used by scripts/cuda-device-run.sh (stage profile)."""
import csv
import sys
from collections import OrderedDict


def main(path):
    rows = []
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    reader = csv.DictReader(lines)
    for r in reader:
        name = r.get("Kernel Name") or r.get("Function Name") or ""
        value = r.get("gpu__time_duration.sum", "")
        try:
            ns = float(value.replace(",", ""))
        except ValueError:
            continue   # the units row
        rows.append((name, ns))
    if not rows:
        print("no kernels in", path)
        return
    # A greedy decode step ends with the device's token pick (top_candidates_kernel); take the
    # kernels between two of them. Without it, fall back to two embedding gathers apart.
    ends = [i for i, (n, _) in enumerate(rows) if "top_candidates_kernel" in n]
    step = rows
    if len(ends) >= 2:
        step = rows[ends[0] + 1:ends[1] + 1]
    else:
        starts = [i for i, (n, _) in enumerate(rows) if n.startswith("gather_rows_kernel")]
        if len(starts) >= 3:
            step = rows[starts[0]:starts[2]]
    families = OrderedDict()
    for name, ns in step:
        key = name.split("(")[0].replace("void ", "").replace("<unnamed>::", "").strip()
        c, t = families.get(key, (0, 0.0))
        families[key] = (c + 1, t + ns)
    total = sum(t for _, t in families.values())
    print(f"kernels in one decode step: {len(step)}, kernel time {total / 1e3:.1f} us")
    print("| kernel | launches | total us | mean us | share |")
    print("|---|---|---|---|---|")
    for key, (c, t) in sorted(families.items(), key=lambda kv: -kv[1][1]):
        print(f"| {key} | {c} | {t / 1e3:.1f} | {t / c / 1e3:.2f} | {100 * t / total:.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1])

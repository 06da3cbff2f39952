#!/usr/bin/env python3
"""Summarises the device run's woprof stage: Nsight Compute (--csv --page raw) over `bench_wo profile`,
one row per profiled launch in order, with the kernel's template arguments shortened, its grid and
block, time, DRAM throughput (% of peak), bytes read, active warps (% of peak), registers, the
occupancy limit from registers, long-scoreboard stalls per issued instruction and SM throughput.

Usage: python3 scripts/ncu_wo.py wo-ncu.csv [substring ...]   (only kernels whose name has one of them)
"""
import csv
import re
import sys

COLUMNS = [
    ("gpu__time_duration.sum", "us", lambda v: f"{v / 1000:.1f}"),
    ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "DRAM %", lambda v: f"{v:.0f}"),
    ("dram__bytes_read.sum", "MB read", lambda v: f"{v / 1e6:.1f}"),
    ("sm__warps_active.avg.pct_of_peak_sustained_active", "warps %", lambda v: f"{v:.0f}"),
    ("launch__registers_per_thread", "regs", lambda v: f"{v:.0f}"),
    ("launch__occupancy_limit_registers", "blocks/SM (regs)", lambda v: f"{v:.0f}"),
    ("smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio", "long-sb stall/issue", lambda v: f"{v:.1f}"),
    ("sm__inst_executed.avg.per_cycle_elapsed", "IPC", lambda v: f"{v:.2f}"),
    ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "SM %", lambda v: f"{v:.0f}"),
]


def number(text):
    try:
        return float(text.replace(",", ""))
    except (AttributeError, ValueError):
        return None


def short(name):
    name = name.replace("(anonymous namespace)::", "").replace("<unnamed>::", "").replace("void ", "")
    name = re.sub(r"\(.*\)$", "", name)   # the parameter list
    return name.replace("__half", "half").replace("__nv_bfloat16", "bf16").strip()


def main(path, filters):
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    rows = list(csv.DictReader(lines))
    print("| # | kernel | grid | block | " + " | ".join(label for _, label, _ in COLUMNS) + " |")
    print("|---" * (4 + len(COLUMNS)) + "|")
    index = 0
    for r in rows:
        name = r.get("Kernel Name") or r.get("Function Name") or ""
        if number(r.get("gpu__time_duration.sum")) is None:
            continue   # the units row
        index += 1
        if filters and not any(s in name for s in filters):
            continue
        cells = []
        for metric, _, fmt in COLUMNS:
            v = number(r.get(metric))
            cells.append(fmt(v) if v is not None else "-")
        grid = r.get("launch__grid_size") or r.get("Grid Size") or "-"
        block = r.get("launch__block_size") or r.get("Block Size") or "-"
        print(f"| {index} | {short(name)} | {grid} | {block} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])

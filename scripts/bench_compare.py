#!/usr/bin/env python3
"""`petrel bench` runs side by side, as one table.

Reads a file of static `petrel bench` outputs, each under a line `## LABEL ...` (as the
before-after and alternate stages of scripts/cuda-device-run.sh write them; runs with the same
label are repeats), and prints per grid point and label the latency of every run and the median
decode step, (latency - TTFT) / (output - 1), then each label's median against the first label's.

    python3 scripts/bench_compare.py before-after.md
"""
import statistics
import sys


def parse(path):
    """{label: {(batch, input, output): [(latency ms, TTFT ms), ...]}}, labels in file order."""
    runs, label, columns = {}, None, None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if line.startswith("## "):
            label = line[3:].split()[0] if len(line) > 3 else "(none)"
            runs.setdefault(label, {})
            columns = None
        elif line.startswith("| batch |"):
            columns = [c.strip() for c in line.strip("|").split("|")]
        elif columns and line.startswith("|") and not line.startswith("|---") and label is not None:
            cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|"))))
            try:
                point = (int(cells["batch"]), int(cells["input"]), int(cells["output"]))
                runs[label].setdefault(point, []).append((float(cells["latency ms"]), float(cells["TTFT ms"])))
            except (KeyError, ValueError):
                continue
    return runs


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs = parse(sys.argv[1])
    labels = [l for l in runs if runs[l]]
    if not labels:
        sys.exit(f"{sys.argv[1]}: no petrel bench tables under '## LABEL' lines")
    points = sorted({p for l in labels for p in runs[l]})
    first = labels[0]
    header = ["point"]
    for l in labels:
        header += [f"{l} latency ms", f"{l} decode step ms"]
    for l in labels[1:]:
        header += [f"{l} / {first} latency", f"{l} / {first} decode step"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for batch, inp, out in points:
        row, latency, steps = [f"{batch} x {inp}/{out}"], {}, {}
        for l in labels:
            r = runs[l].get((batch, inp, out), [])
            if not r:
                row += ["-", "-"]
                continue
            latency[l] = statistics.median(lat for lat, _ in r)
            steps[l] = statistics.median((lat - ttft) / (out - 1) for lat, ttft in r) if out > 1 else None
            row.append(", ".join(f"{lat:.1f}" for lat, _ in r))
            row.append(f"{steps[l]:.3f}" if steps[l] is not None else "-")
        for l in labels[1:]:
            for values in (latency, steps):
                a, b = values.get(first), values.get(l)
                row.append(f"{b / a:.3f}" if a and b else "-")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

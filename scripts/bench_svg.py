#!/usr/bin/env python3
"""Draws docs/bench.svg from docs/bench.json (written by `make bench`), standard library only.

One panel of horizontal bars per workload row measured in ns: each peer's time divided by
kmem's (1.0 = as fast as kmem; > 1 = slower than kmem), on a log scale — the median over the
benchmark's rounds of the two times' ratio in the same round (the third figure of a peer's
entry). Rows in % (heap efficiency, metadata) get a panel of plain percentages. The
Markdown table printed at the end shows the best time and that ratio.

Usage: scripts/bench_svg.py [docs/bench.json] [docs/bench.svg]
"""

import json
import math
import sys

COLOURS = ["#1b6ca8", "#e07b39", "#6a9f3a", "#b8413b", "#7d5ba6", "#8c6d31", "#777777", "#c2a83e"]


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "docs/bench.json"
    dst = sys.argv[2] if len(sys.argv) > 2 else "docs/bench.svg"
    with open(src) as f:
        data = json.load(f)
    peers = data["peers"]
    rows = data["rows"]
    ns_rows = [r for r in rows if r["unit"] == "ns" and r["vals"][0]]
    pct_rows = [r for r in rows if r["unit"] == "%"]

    bar_h, gap, label_w, plot_w = 7, 10, 210, 520
    legend_h = 40
    lo, hi = 0.1, 100.0  # log-scale range of the ratio axis

    def x_of(ratio):
        r = min(max(ratio, lo), hi)
        return label_w + plot_w * (math.log10(r) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    out = []
    y = legend_h + 30
    body = []
    body.append(f'<text x="{label_w}" y="{y - 12}" font-size="12" font-weight="bold">'
                "time per operation relative to kmem (log scale; &gt; 1 = slower than kmem)</text>")
    top = y
    for r in ns_rows:
        k = r["vals"][0][0]
        present = [(i, v) for i, v in enumerate(r["vals"]) if v]
        h = len(present) * bar_h + gap
        body.append(f'<text x="{label_w - 6}" y="{y + h / 2}" font-size="11" text-anchor="end" '
                    f'dominant-baseline="middle">{esc(r["name"])} ({k:.1f} ns)</text>')
        for j, (i, v) in enumerate(present):
            ratio = v[2]
            x0, x1 = x_of(1.0), x_of(ratio)
            body.append(f'<rect x="{min(x0, x1):.1f}" y="{y + j * bar_h}" width="{max(abs(x1 - x0), 1):.1f}" '
                        f'height="{bar_h - 1}" fill="{COLOURS[i % len(COLOURS)]}">'
                        f"<title>{esc(peers[i])}: {v[0]:.2f} ns ({ratio:.2f}x kmem)</title></rect>")
        y += h
    for t in [0.1, 0.25, 0.5, 1, 2, 4, 10, 25, 100]:
        x = x_of(t)
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{y}" stroke="#000" '
                    f'stroke-opacity="{0.6 if t == 1 else 0.15}"/>')
        body.append(f'<text x="{x:.1f}" y="{y + 12}" font-size="10" text-anchor="middle">{t}x</text>')
    y += 40
    if pct_rows:
        body.append(f'<text x="{label_w}" y="{y - 12}" font-size="12" font-weight="bold">'
                    "heap efficiency (live requested bytes / arena) and kmem metadata, %</text>")
        top = y
        for r in pct_rows:
            present = [(i, v) for i, v in enumerate(r["vals"]) if v]
            h = len(present) * bar_h + gap
            body.append(f'<text x="{label_w - 6}" y="{y + h / 2}" font-size="11" text-anchor="end" '
                        f'dominant-baseline="middle">{esc(r["name"])}</text>')
            for j, (i, v) in enumerate(present):
                w = plot_w * min(v[0], 100) / 100
                body.append(f'<rect x="{label_w}" y="{y + j * bar_h}" width="{max(w, 1):.1f}" '
                            f'height="{bar_h - 1}" fill="{COLOURS[i % len(COLOURS)]}">'
                            f"<title>{esc(peers[i])}: {v[0]:.2f} %</title></rect>")
            y += h
        for t in range(0, 101, 20):
            x = label_w + plot_w * t / 100
            body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{y}" stroke="#000" stroke-opacity="0.15"/>')
            body.append(f'<text x="{x:.1f}" y="{y + 12}" font-size="10" text-anchor="middle">{t} %</text>')
        y += 30
    width = label_w + plot_w + 30
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
               f'font-family="sans-serif"><rect width="100%" height="100%" fill="#fff"/>')
    for i, p in enumerate(peers):
        x = 10 + (i % 8) * 95
        out.append(f'<rect x="{x}" y="12" width="12" height="12" fill="{COLOURS[i % len(COLOURS)]}"/>')
        out.append(f'<text x="{x + 16}" y="22" font-size="11">{esc(p)}</text>')
    out.extend(body)
    out.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {dst}")
    # The same figures as a Markdown table (for BENCHMARKS.md).
    print("| workload | " + " | ".join(peers) + " |")
    print("|---" * (len(peers) + 1) + "|")
    for r in rows:
        k = r["vals"][0][0] if r["vals"][0] else None
        cells = []
        for v in r["vals"]:
            if not v:
                cells.append("–")
            elif r["unit"] == "ns" and k:
                cells.append(f"{v[0]:.1f} ({v[2]:.2f}×)")
            else:
                cells.append(f"{v[0]:.1f} {r['unit']}")
        print(f"| {r['name']} | " + " | ".join(cells) + " |")
    print()
    print("| target | measured | mimalloc, for reference | status |")
    print("|---|---|---|---|")
    for t in data.get("targets", []):
        ref = t["reference"] or "–"
        print(f"| {t['target']} | {t['measured']} | {ref} | {'met' if t['met'] else 'missed'} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Figures of the SmolLM2 experiments for docs/experiments.md, as plain SVG (no plotting library).

    python3 scripts/experiments/figures.py schedules out/experiments/smollm2/schedules docs/figures
    python3 scripts/experiments/figures.py context out/experiments/smollm2/context docs/figures
    python3 scripts/experiments/figures.py quality out/experiments/smollm2/quality docs/figures

schedules: per arm, the learning rate and the held-out loss (mean over domains) against tokens.
context: per arm, held-out loss by position within the document at the stage's end (and the base
model before the RoPE change; mean over domains, in the buckets every domain reaches), and
passkey accuracy by length.
quality: per arm, the training loss against tokens, and each task's difference to the baseline
with its paired 95% bootstrap interval (from DIR/report.json).
Reads each arm's run/metrics.jsonl under DIR/arms/ in the order of DIR/report.json.
"""
import json
import sys
from pathlib import Path

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#555555"]


def records(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(l) for l in lines if l.strip()]
    return [r for r in rows if "eval" not in r], [r for r in rows if "eval" in r]


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def tick(v):
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def panel(title, xlabel, ylabel, series, x0, y0, w=420, h=260):
    """One chart at (x0, y0): series = [(name, [(x, y)], dashed)]."""
    pts = [p for _, ps, _ in series for p in ps if p[1] is not None]
    xmin, xmax = min(p[0] for p in pts), max(p[0] for p in pts)
    ymin, ymax = min(p[1] for p in pts), max(p[1] for p in pts)
    pad = (ymax - ymin) * 0.05 or 0.01
    ymin, ymax = ymin - pad, ymax + pad
    if xmax == xmin:
        xmax = xmin + 1
    L, B = 60, 40  # left and bottom margins
    pw, ph = w - L - 120, h - B - 30  # the legend to the right of the plot
    sx = lambda x: x0 + L + (x - xmin) / (xmax - xmin) * pw
    sy = lambda y: y0 + 30 + (ymax - y) / (ymax - ymin) * ph
    out = [f'<text x="{x0 + L}" y="{y0 + 18}" font-size="13" font-weight="bold">{title}</text>',
           f'<rect x="{x0 + L}" y="{y0 + 30}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for i in range(5):
        y = ymin + (ymax - ymin) * i / 4
        out.append(f'<text x="{x0 + L - 4}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end">{tick(y)}</text>')
        x = xmin + (xmax - xmin) * i / 4
        out.append(f'<text x="{sx(x):.1f}" y="{y0 + 30 + ph + 14}" font-size="10" text-anchor="middle">{tick(x)}</text>')
    out.append(f'<text x="{x0 + L + pw / 2}" y="{y0 + h - 4}" font-size="11" text-anchor="middle">{xlabel}</text>')
    out.append(f'<text x="{x0 + 12}" y="{y0 + 30 + ph / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 {x0 + 12} {y0 + 30 + ph / 2})">{ylabel}</text>')
    for k, (name, ps, dashed) in enumerate(series):
        color = "#000000" if dashed else COLORS[k % len(COLORS)]
        ps = [p for p in ps if p[1] is not None]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ps)
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"{dash}/>')
        for x, y in ps:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{color}"/>')
        ly, lx = y0 + 40 + 14 * k, x0 + L + pw + 8
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 20}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="2"{dash}/><text x="{lx + 24}" y="{ly + 4}" font-size="10">{name}</text>')
    return out


def svg(parts, w, h):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
            f'<rect width="100%" height="100%" fill="white"/>' + "".join(parts) + "</svg>\n")


def arms(out):
    return [a["name"] for a in json.loads((out / "report.json").read_text())["arms"]]


def schedules(out, figures):
    names = arms(out)
    lr, heldout = [], []
    for name in names:
        steps, evals = records(out / "arms" / name / "run")
        per_step = steps[0]["tokens"]
        # A branch counts its tokens from its own start: place it after the step it left.
        offset = 0
        branch = json.loads((out / "arms" / name / "arm.json").read_text()).get("branch_from")
        if branch:
            parent, _ = records(out / "arms" / branch["arm"] / "run")
            offset = next(s["tokens"] for s in parent if s["step"] == branch["step"])
        lr.append((name, [(s["tokens"] + offset, s["lr"]) for s in steps], False))
        heldout.append((name, [(e["step"] * per_step + offset, mean(e["eval"].values())) for e in evals], False))
    parts = panel("learning rate", "tokens", "LR", lr, 0, 0, w=440)
    parts += panel("held-out loss (mean of domains)", "tokens", "loss", heldout, 440, 0, w=440)
    (figures / "smollm2-schedules.svg").write_text(svg(parts, 890, 270))


def context(out, figures):
    names = arms(out)
    by_position, passkey, base_done = [], [], False
    for name in names:
        _, evals = records(out / "arms" / name / "run")
        for e in evals:
            lbp = e.get("loss_by_position")
            if not lbp:
                continue
            # Buckets every domain reaches (a lone long document's tail would set the scale).
            width = min(len(v) for v in lbp["loss"].values())
            curve = [((i + 0.5) * lbp["bucket"], mean(v[i] if i < len(v) else None for v in lbp["loss"].values()))
                     for i in range(width)]
            if e["when"] == "start" and not base_done:
                by_position.append(("base, before", curve, True))
                base_done = True
            elif e["when"] == "end":
                by_position.append((name, curve, False))
        grids = [e["passkey"] for e in evals if e.get("passkey")]
        if len(passkey) == 0 and grids:
            g = grids[0]
            passkey.append(("base, before", [(l, mean(g["accuracy"][i])) for i, l in enumerate(g["lengths"])], True))
        if grids:
            g = grids[-1]
            passkey.append((name, [(l, mean(g["accuracy"][i])) for i, l in enumerate(g["lengths"])], False))
    parts = panel("held-out loss by position (end of stage)", "position in document", "loss", by_position, 0, 0, w=440)
    parts += panel("passkey accuracy (mean over depths)", "prompt length", "accuracy", passkey, 440, 0, w=440)
    (figures / "smollm2-context.svg").write_text(svg(parts, 890, 270))


def forest(title, rows, x0, y0, w=440):
    """Differences with intervals, one row each: rows = [(label, value, low, high)], a line at 0."""
    L, R, top, row_h = 150, 20, 30, 26
    h = top + row_h * len(rows) + 34
    lo = min(min(r[2] for r in rows), 0.0)
    hi = max(max(r[3] for r in rows), 0.0)
    pad = (hi - lo) * 0.08 or 0.01
    lo, hi = lo - pad, hi + pad
    pw = w - L - R
    sx = lambda x: x0 + L + (x - lo) / (hi - lo) * pw
    out = [f'<text x="{x0 + 10}" y="{y0 + 18}" font-size="13" font-weight="bold">{title}</text>',
           f'<line x1="{sx(0):.1f}" y1="{y0 + top}" x2="{sx(0):.1f}" y2="{y0 + h - 34}" stroke="#999" '
           f'stroke-dasharray="3,3"/>']
    for k, (label, value, low, high) in enumerate(rows):
        y = y0 + top + row_h * k + row_h / 2
        color = COLORS[1] if low > 0 or high < 0 else COLORS[0]
        out.append(f'<text x="{x0 + L - 8}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{label}</text>')
        out.append(f'<line x1="{sx(low):.1f}" y1="{y:.1f}" x2="{sx(high):.1f}" y2="{y:.1f}" stroke="{color}" '
                   f'stroke-width="2"/>')
        out.append(f'<circle cx="{sx(value):.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')
    axis_y = y0 + h - 34
    out.append(f'<line x1="{x0 + L}" y1="{axis_y}" x2="{x0 + L + pw}" y2="{axis_y}" stroke="#999"/>')
    for i in range(5):
        x = lo + (hi - lo) * i / 4
        out.append(f'<text x="{sx(x):.1f}" y="{axis_y + 14}" font-size="10" text-anchor="middle">{x:+.3f}</text>')
    out.append(f'<text x="{x0 + L + pw / 2}" y="{axis_y + 30}" font-size="11" text-anchor="middle">'
               f'arm − baseline (red: the interval excludes 0)</text>')
    return out, h


def quality(out, figures):
    report = json.loads((out / "report.json").read_text())
    curves = []
    for arm in report["arms"]:
        steps, _ = records(out / "arms" / arm["name"] / "run")
        curves.append((arm["name"], [(s["tokens"], s["loss"]) for s in steps], False))
    parts = panel("training loss", "tokens", "loss", curves, 0, 0, w=440)
    rows = []
    for arm in report["arms"][1:]:
        for task, t in arm["tasks"].items():
            for m in [t] + t.get("more", []):
                if m["metric"] == "perplexity":
                    continue  # the loss's exponential: the same interval, another scale
                d = m["vs_baseline"]
                rows.append((f'{task} {m["metric"]}', d["value"], d["low"], d["high"]))
    title = f'{report["arms"][1]["name"]} − {report["baseline"]}' if len(report["arms"]) == 2 else "vs the baseline"
    more, h = forest(title, rows, 440, 0, w=460)
    (figures / "smollm2-quality.svg").write_text(svg(parts + more, 910, max(270, h)))


if __name__ == "__main__":
    kind, out, figures = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    figures.mkdir(parents=True, exist_ok=True)
    {"schedules": schedules, "context": context, "quality": quality}[kind](out, figures)

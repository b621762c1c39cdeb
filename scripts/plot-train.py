#!/usr/bin/env python3
"""Plots a training run's curves from MODEL/train.json as an SVG (standard library only):
left, train and valid loss per evaluation; right, the in-training valid L2D-L Recall@20 that
selects the exported weights (marked).

    scripts/plot-train.py models/default/train.json docs/results/train/train-curves.svg [--title TEXT]
        [--compare OTHER/train.json LABEL]

`--compare` draws another run's valid loss and recall beside the first (e.g. two schedules).
"""
import json
import sys

W, H, PAD = 420, 260, 48


def panel(x0, series, title, ylabel, marker=None):
    """One panel: `series` is a list of (label, colour, [(x, y)]) lines."""
    points = [p for _, _, pts in series for p in pts]
    if not points:
        return f'<text x="{x0 + W / 2}" y="{H / 2}" text-anchor="middle">{title}: no data</text>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xmin, xmax = 0, max(xs)
    ymin, ymax = min(ys), max(ys)
    if ymax == ymin:
        ymax = ymin + 1
    span = ymax - ymin
    ymin, ymax = ymin - 0.05 * span, ymax + 0.05 * span

    def sx(x):
        return x0 + PAD + (x - xmin) / max(xmax - xmin, 1) * (W - 1.5 * PAD)

    top = 30 + 14 * len(series) + 10  # legend lines sit above the plot area

    def sy(y):
        return H - PAD - (y - ymin) / (ymax - ymin) * (H - PAD - top)

    out = [f'<text x="{x0 + W / 2}" y="18" text-anchor="middle" font-weight="bold">{title}</text>']
    out.append(f'<line x1="{sx(xmin)}" y1="{sy(ymin)}" x2="{sx(xmax)}" y2="{sy(ymin)}" stroke="#333"/>')
    out.append(f'<line x1="{sx(xmin)}" y1="{sy(ymin)}" x2="{sx(xmin)}" y2="{sy(ymax)}" stroke="#333"/>')
    for i in range(5):
        y = ymin + (ymax - ymin) * i / 4
        out.append(f'<text x="{sx(xmin) - 4}" y="{sy(y) + 4}" text-anchor="end" font-size="10">{y:.3g}</text>')
        x = xmin + (xmax - xmin) * i / 4
        out.append(f'<text x="{sx(x)}" y="{sy(ymin) + 14}" text-anchor="middle" font-size="10">{x:.0f}</text>')
    out.append(f'<text x="{x0 + W / 2}" y="{H - 8}" text-anchor="middle" font-size="11">step</text>')
    out.append(
        f'<text x="{x0 + 12}" y="{H / 2}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 {x0 + 12} {H / 2})">{ylabel}</text>'
    )
    for k, (label, colour, pts) in enumerate(series):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in pts:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>')
        out.append(f'<text x="{x0 + PAD + 4}" y="{36 + 14 * k}" fill="{colour}" font-size="11">{label}</text>')
    if marker is not None:
        mx, my = marker
        out.append(f'<circle cx="{sx(mx):.1f}" cy="{sy(my):.1f}" r="6" fill="none" stroke="#000" stroke-width="1.5"/>')
        out.append(f'<text x="{sx(mx):.1f}" y="{sy(my) - 9:.1f}" text-anchor="middle" font-size="10">exported</text>')
    return "\n".join(out)


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    title = ""
    if "--title" in args:
        i = args.index("--title")
        title = args[i + 1]
        del args[i : i + 2]
    other = None
    if "--compare" in args:
        i = args.index("--compare")
        other = (json.load(open(args[i + 1])), args[i + 2])
        del args[i : i + 3]
    state = json.load(open(args[0]))
    history = state.get("history", [])
    recall = state.get("valid_recall", [])
    best = state.get("best_step")
    loss = [
        ("train loss (recent mean)", "#d62728", [(h[0], h[1]) for h in history]),
        ("valid loss", "#1f77b4", [(h[0], h[2]) for h in history]),
    ]
    marker = next(((s, r) for s, r in recall if s == best), None)
    recall_series = [("valid L2D-L R@20 (subset)", "#2ca02c", [(s, r) for s, r in recall])]
    if other is not None:
        o, label = other
        loss.append((f"valid loss, {label}", "#9467bd", [(h[0], h[2]) for h in o.get("history", [])]))
        recall_series.append((f"R@20, {label}", "#8c564b", [(s, r) for s, r in o.get("valid_recall", [])]))
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 20}" font-family="sans-serif">',
        '<rect width="100%" height="100%" fill="white"/>',
        panel(0, loss, "Loss per evaluation", "cross-entropy"),
        panel(W, recall_series, "In-training valid recall (selects weights)", "Recall@20", marker),
        f'<text x="{W}" y="{H + 14}" text-anchor="middle" font-size="10">{title}</text>',
        "</svg>",
    ]
    with open(args[1], "w") as f:
        f.write("\n".join(svg) + "\n")
    print(f"wrote {args[1]}")


if __name__ == "__main__":
    main()

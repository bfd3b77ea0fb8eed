"""`gateway bench --report FILE.html`: the results as one self-contained page.

Every figure with its target and verdict, per scenario, and the charts a scenario recorded drawn as
inline SVG (no scripts, fonts or other external assets): latency distributions (the latency at each
percentile, one line per design) and throughput over time (acknowledged or sent per second).

A chart is recorded in a scenario's result as
  {"title": ..., "kind": "cdf", "unit": "ms", "series": {name: [latency at p0, p1, ..., p100]}}
  {"title": ..., "kind": "timeline", "bucket_s": 0.5, "unit": "per s", "series": {name: [count per bucket]}}
"""
from __future__ import annotations

import html
import json
from pathlib import Path

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
W, H, PAD_L, PAD_B, PAD_T, PAD_R = 560, 260, 62, 40, 24, 16

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1180px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f5f5f5}
.PASS{color:#11772b;font-weight:bold}.MISS{color:#b3261e;font-weight:bold}.INFO{color:#555}
.charts{display:flex;flex-wrap:wrap;gap:12px}svg{background:#fff;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:12px}.note{color:#555}"""


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    for step in (1, 2, 2.5, 5, 10):
        mag = 10 ** (len(str(int(v))) - 1)
        if step * mag >= v:
            return step * mag
    return v


def _axes(title: str, x_label: str, y_label: str, x_max: float, y_max: float, x_ticks: list[float]) -> list[str]:
    out = [f'<text x="{W / 2}" y="15" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#333"/>',
           f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#333"/>',
           f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle" font-size="12">{html.escape(x_label)}</text>',
           f'<text x="12" y="{H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 12 {H / 2})">'
           f'{html.escape(y_label)}</text>']
    for i in range(5):
        y_val = y_max * i / 4
        y = H - PAD_B - (H - PAD_B - PAD_T) * i / 4
        out.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{y_val:g}</text>')
    for x_val in x_ticks:
        x = PAD_L + (W - PAD_L - PAD_R) * x_val / x_max if x_max else PAD_L
        out.append(f'<text x="{x:.1f}" y="{H - PAD_B + 14}" text-anchor="middle" font-size="11">{x_val:g}</text>')
    return out


def _legend(names: list[str]) -> list[str]:
    """Three entries a row, top left of the plot."""
    out = []
    for i, n in enumerate(names):
        x, y = PAD_L + 8 + 160 * (i % 3), PAD_T + 4 + 14 * (i // 3)
        out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{COLORS[i % len(COLORS)]}"/>'
                   f'<text x="{x + 14}" y="{y + 9}" font-size="11">{html.escape(n)}</text>')
    return out


def svg_chart(chart: dict) -> str:
    """One chart as an inline <svg> element."""
    series = {k: [v for v in vals if v is not None] for k, vals in chart["series"].items() if vals}
    if not series:
        return ""
    parts: list[str] = []
    if chart["kind"] == "cdf":
        y_max = _nice_max(max(max(v) for v in series.values()))
        parts += _axes(chart["title"], "percentile", f"latency ({chart.get('unit', 'ms')})", 100, y_max,
                       [0, 25, 50, 75, 90, 100])
        for i, (name, vals) in enumerate(series.items()):
            n = len(vals) - 1 or 1
            pts = " ".join(f"{PAD_L + (W - PAD_L - PAD_R) * k / n:.1f},"
                           f"{H - PAD_B - (H - PAD_B - PAD_T) * min(v, y_max) / y_max:.1f}" for k, v in enumerate(vals))
            parts.append(f'<polyline fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="2" points="{pts}"/>')
    else:
        bucket = chart.get("bucket_s", 1.0)
        rates = {k: [c / bucket for c in v] for k, v in series.items()}
        y_max = _nice_max(max(max(v) for v in rates.values()))
        x_max = max(len(v) for v in rates.values()) * bucket
        parts += _axes(chart["title"], "seconds", chart.get("unit", "per s"), x_max, y_max,
                       [round(x_max * f, 1) for f in (0, 0.25, 0.5, 0.75, 1)])
        for i, (name, vals) in enumerate(rates.items()):   # a step per bucket
            pts = " ".join(f"{PAD_L + (W - PAD_L - PAD_R) * (k + edge) * bucket / x_max:.1f},"
                           f"{H - PAD_B - (H - PAD_B - PAD_T) * v / y_max:.1f}"
                           for k, v in enumerate(vals) for edge in (0, 1))
            parts.append(f'<polyline fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="1.5" points="{pts}"/>')
    parts += _legend(list(series))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">'
            + "".join(parts) + "</svg>")


def render(results: dict) -> str:
    e = html.escape
    body = [f"<h1>gateway bench: {e(str(results.get('scale')))} run</h1>",
            f"<p class=note>{e(str(results.get('scale_note', '')))}. Machine: {e(json.dumps(results.get('machine', {})))}."
            " Ratios compare with a baseline measured in the same run.</p>"]
    rows = []
    for name, res in results.items():
        if isinstance(res, dict) and "summary" in res:
            s = res["summary"]
            for f in res.get("figures") or [{"name": name, "measured": s["measured"], "target": s["target"],
                                             "verdict": s["verdict"]}]:
                rows.append(f"<tr><td>{e(name)}</td><td>{e(f['name'])}</td><td>{e(f['measured'])}</td>"
                            f"<td>{e(f['target'])}</td><td class={f['verdict']}>{f['verdict']}</td></tr>")
    body.append("<h2>Every figure</h2><table><tr><th>scenario</th><th>figure</th><th>measured</th><th>target</th>"
                "<th>verdict</th></tr>" + "".join(rows) + "</table>")
    for name, res in results.items():
        if not (isinstance(res, dict) and "summary" in res):
            continue
        s = res["summary"]
        body.append(f"<h2>{e(name)} <span class={s['verdict']}>{s['verdict']}</span></h2>"
                    f"<p>{e(s['measured'])}<br><span class=note>target: {e(s['target'])}"
                    + (f"; {s['ratio']}x vs baseline ({e(s.get('ratio_meaning', 'gateway / naive'))})"
                       if s.get("ratio") is not None else "") + "</span></p>")
        charts = [svg_chart(c) for c in res.get("charts") or []]
        if any(charts):
            body.append("<div class=charts>" + "".join(charts) + "</div>")
        if res.get("processes"):
            body.append(f"<p class=note>processes: {e(str(res['processes']))}</p>")
    for scenario, procs in (results.get("profiles") or {}).items():
        for proc, prof in procs.items():
            lines = "\n".join(f"{t['self']:>6.1%} self {t['total']:>6.1%} total  {t['function']}" for t in prof["top"])
            body.append(f"<h2>profile: {e(scenario)} / {e(proc)}</h2><pre>{e(lines)}</pre>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>gateway bench</title><style>{CSS}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def write_report(results: dict, path: Path) -> None:
    path.write_text(render(results))

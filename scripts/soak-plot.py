#!/usr/bin/env python3
"""Plots a soak run's /metrics scrapes (scripts/soak-scrape.py) and prints its figures.

    soak-plot.py SAMPLES.csv [-events EVENTS.csv] [-out soak.svg] [-bots N] [-secs S]
                 [-warmup S] [-title T] [-subtitle T] [-max-slope-pct-h X]

Writes an SVG (plain Python, no plotting library) with four panels sharing the time axis:
CPU % of one core per process (the derivative of its CPU seconds), RSS per process, the
clients connected to the gate(s), and messages per second per process (the derivative of
its message counters, in + out, summed over message types). The events (hot swaps,
reload, bots start and end) are dashed vertical lines, the warm-up a grey band.

Prints one line per process instance (PID) after the warm-up: samples, mean and peak RSS,
the least-squares slope of RSS against time (KiB/min and % of the mean RSS per hour), mean
and peak CPU %, mean messages/s. The window is from the end of the warm-up to the bots'
end (1 s before -secs, when they start to leave; else "bots done" in the events, else the
last sample). The warm-up is -warmup seconds if
given, else the later of 20 % of -secs and the first sample where the gates' clients reach
-bots (time 0 is when the bots start).

With -max-slope-pct-h X, exits 2 if a server instance (not the bots) with at least 10
samples over at least 60 s in the window has an RSS slope above X % per hour.
"""
import argparse
import csv
import math
import sys
from collections import OrderedDict

MIB = 1024.0 * 1024.0
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#17becf", "#bcbd22"]
EXTRA_COLOR = "#7f7f7f"  # processes scraped from /proc (the bots)


def num(s):
    if s is None or s == "":
        return None
    try:
        return float(s)
    except ValueError:
        return None


def load(path):
    """OrderedDict process -> list of rows (dicts with floats), in time order."""
    procs = OrderedDict()
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            row = {k: num(v) for k, v in r.items() if k not in ("process", "state", "error")}
            row["state"] = r.get("state", "")
            row["up"] = r.get("up") == "1"
            procs.setdefault(r["process"], []).append(row)
    for rows in procs.values():
        rows.sort(key=lambda x: x["elapsed_s"])
    return procs


def load_events(path):
    ev = []
    if not path:
        return ev
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            ev.append({"t": float(r["elapsed_s"]), "event": r["event"],
                       "duration": num(r.get("duration_s")), "status": r.get("status", "")})
    return ev


def rates(rows, cols, scale=1.0):
    """[(t, value)] of the derivative of sum(cols) between consecutive samples of the same
    instance (same PID, counters not going back); (t, None) breaks the line."""
    out = []
    prev = None
    for r in rows:
        v = None
        if r["up"] and all(r.get(c) is not None for c in cols):
            cur = sum(r[c] for c in cols)
            if (prev is not None and prev[2] == r.get("pid") and r["elapsed_s"] > prev[0]
                    and cur >= prev[1]):
                v = scale * (cur - prev[1]) / (r["elapsed_s"] - prev[0])
            prev = (r["elapsed_s"], cur, r.get("pid"))
        else:
            prev = None
        out.append((r["elapsed_s"], v))
    return out


def values(rows, col, scale=1.0):
    return [(r["elapsed_s"], r[col] * scale if r["up"] and r.get(col) is not None else None)
            for r in rows]


def nice_step(span, n):
    if span <= 0:
        return 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_tick(v):
    if abs(v - round(v)) < 1e-9:
        return f"{int(round(v))}"
    return f"{v:g}"


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def lsq_slope(pts):
    n = len(pts)
    if n < 2:
        return None
    mx = sum(t for t, _ in pts) / n
    my = sum(v for _, v in pts) / n
    sxx = sum((t - mx) ** 2 for t, _ in pts)
    if sxx == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in pts) / sxx


class Plot:
    W, H = 900, 1000
    LEFT, RIGHT = 72, 24
    TOP, PANEL_H, GAP = 116, 188, 27

    def __init__(self, t_lo, t_hi):
        self.t_lo, self.t_hi = t_lo, t_hi
        self.minutes = (t_hi - t_lo) > 600
        self.out = []

    def x(self, t):
        w = self.W - self.LEFT - self.RIGHT
        return self.LEFT + (t - self.t_lo) / (self.t_hi - self.t_lo or 1) * w

    def panel_top(self, i):
        return self.TOP + i * (self.PANEL_H + self.GAP)

    def add(self, s):
        self.out.append(s)

    def time_ticks(self):
        unit = 60.0 if self.minutes else 1.0
        lo, hi = self.t_lo / unit, self.t_hi / unit
        step = nice_step(hi - lo, 10)
        first = math.ceil(lo / step) * step
        ticks = []
        v = first
        while v <= hi + 1e-9:
            ticks.append((v * unit, fmt_tick(round(v, 6))))
            v += step
        return ticks

    def panel(self, i, title, unit, series, events, warmup_end):
        """series: [(label, color, dashed, [(t, v)])]."""
        top = self.panel_top(i)
        bot = top + self.PANEL_H
        left, right = self.LEFT, self.W - self.RIGHT
        vmax = max([v for _, _, _, pts in series for _, v in pts if v is not None] or [0])
        step = nice_step(vmax * 1.08 if vmax > 0 else 1, 4)
        ymax = step * max(1, math.ceil(vmax * 1.08 / step)) if vmax > 0 else step * 4

        def y(v):
            return bot - v / ymax * self.PANEL_H

        a = self.add
        a(f'<g class="panel" id="panel{i + 1}">')
        a(f'<text x="{left}" y="{top - 8}" class="ptitle">{esc(title)}</text>')
        a(f'<rect x="{left}" y="{top}" width="{right - left}" height="{self.PANEL_H}" '
          'class="frame-bg"/>')
        if warmup_end is not None and warmup_end > self.t_lo:
            wx = self.x(min(warmup_end, self.t_hi))
            a(f'<rect x="{left}" y="{top}" width="{wx - left:.1f}" height="{self.PANEL_H}" '
              'class="warmup"/>')
            if i == 0:
                a(f'<text x="{left + 4}" y="{top + 12}" class="small muted">warm-up</text>')
        # Grid and y labels.
        v = 0.0
        while v <= ymax + 1e-9:
            yy = y(v)
            a(f'<line x1="{left}" y1="{yy:.1f}" x2="{right}" y2="{yy:.1f}" class="grid"/>')
            a(f'<text x="{left - 6}" y="{yy + 4:.1f}" class="ylab">{fmt_tick(round(v, 6))}</text>')
            v += step
        for t, _ in self.time_ticks():
            xx = self.x(t)
            a(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{bot}" class="grid"/>')
        # Y axis unit, rotated.
        cy = top + self.PANEL_H / 2
        a(f'<text x="16" y="{cy:.1f}" class="axis" transform="rotate(-90 16 {cy:.1f})">'
          f'{esc(unit)}</text>')
        # Events.
        for e in events:
            if self.t_lo <= e["t"] <= self.t_hi:
                xx = self.x(e["t"])
                a(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{bot}" class="event"/>')
        # Series (clipped to the panel).
        a(f'<clipPath id="clip{i}"><rect x="{left}" y="{top - 1}" width="{right - left}" '
          f'height="{self.PANEL_H + 2}"/></clipPath>')
        a(f'<g clip-path="url(#clip{i})">')
        for label, color, dashed, pts in series:
            d = []
            pen = False
            for t, v in pts:
                if v is None:
                    pen = False
                    continue
                d.append(f'{"L" if pen else "M"}{self.x(t):.1f},{y(v):.1f}')
                pen = True
            if not d:
                continue
            dash = ' stroke-dasharray="5,3"' if dashed else ""
            a(f'<path d="{" ".join(d)}" stroke="{color}"{dash} class="line">'
              f'<title>{esc(label)}</title></path>')
            # A lone point (no segment around it) would not show: a dot.
            singles = []
            for k, (t, v) in enumerate(pts):
                if v is None:
                    continue
                before = k > 0 and pts[k - 1][1] is not None
                after = k + 1 < len(pts) and pts[k + 1][1] is not None
                if not before and not after:
                    singles.append((t, v))
            for t, v in singles:
                a(f'<circle cx="{self.x(t):.1f}" cy="{y(v):.1f}" r="2" fill="{color}"/>')
        a('</g>')
        a(f'<rect x="{left}" y="{top}" width="{right - left}" height="{self.PANEL_H}" '
          'class="frame"/>')
        if not any(v is not None for _, _, _, pts in series for _, v in pts):
            a(f'<text x="{(left + right) / 2}" y="{cy:.1f}" class="muted" '
              'text-anchor="middle">no data</text>')
        a('</g>')

    def render(self, title, subtitle, legend, events, panels, warmup_end):
        a = self.add
        a(f'<text x="{self.LEFT}" y="26" class="title">{esc(title)}</text>')
        if subtitle:
            a(f'<text x="{self.LEFT}" y="46" class="sub">{esc(subtitle)}</text>')
        # Legend: one row.
        lx = self.LEFT
        for label, color, dashed in legend:
            dash = ' stroke-dasharray="5,3"' if dashed else ""
            a(f'<line x1="{lx}" y1="66" x2="{lx + 22}" y2="66" stroke="{color}"{dash} '
              'class="line"/>')
            a(f'<text x="{lx + 27}" y="70" class="leg">{esc(label)}</text>')
            lx += 27 + 7.2 * len(label) + 22
        # Event labels above the first panel, on two rows when they would overlap.
        last_x = [-1e9, -1e9]
        for e in events:
            if not self.t_lo <= e["t"] <= self.t_hi:
                continue
            xx = self.x(e["t"])
            label = e["event"]
            if e["duration"] is not None and e["event"] not in ("bots start", "bots done"):
                label += f' ({e["duration"]:.1f} s)'
            if e["status"] and e["status"] != "ok":
                label += f' [{e["status"]}]'
            wdt = 6.0 * len(label)
            row = 0 if xx - wdt / 2 > last_x[0] + 6 else 1
            if row == 1 and xx - wdt / 2 <= last_x[1] + 6:
                row = 0
            last_x[row] = xx + wdt / 2
            yy = 88 + 13 * row
            anchor = "middle"
            if xx + wdt / 2 > self.W - 4:
                anchor = "end"
            elif xx - wdt / 2 < 4:
                anchor = "start"
            a(f'<text x="{xx:.1f}" y="{yy}" class="evlab" text-anchor="{anchor}">'
              f'{esc(label)}</text>')
            top = self.panel_top(0)
            a(f'<line x1="{xx:.1f}" y1="{yy + 3}" x2="{xx:.1f}" y2="{top}" class="event"/>')
        for i, (title, unit, series) in enumerate(panels):
            self.panel(i, title, unit, series, events, warmup_end)
        # Time axis under the last panel.
        bot = self.panel_top(len(panels) - 1) + self.PANEL_H
        for t, lab in self.time_ticks():
            xx = self.x(t)
            a(f'<line x1="{xx:.1f}" y1="{bot}" x2="{xx:.1f}" y2="{bot + 5}" class="tick"/>')
            a(f'<text x="{xx:.1f}" y="{bot + 18}" class="xlab">{lab}</text>')
        unit = "minutes" if self.minutes else "seconds"
        a(f'<text x="{(self.LEFT + self.W - self.RIGHT) / 2}" y="{bot + 40}" class="axis" '
          f'text-anchor="middle">time since the bots started ({unit})</text>')
        style = """
  text { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; fill: #222; }
  .title { font-size: 17px; font-weight: bold; }
  .sub { font-size: 12px; fill: #555; }
  .leg { font-size: 12px; }
  .ptitle { font-size: 13px; font-weight: bold; }
  .axis { font-size: 12px; fill: #444; text-anchor: middle; }
  .ylab { font-size: 11px; text-anchor: end; fill: #444; }
  .xlab { font-size: 11px; text-anchor: middle; fill: #444; }
  .small { font-size: 10px; }
  .muted { fill: #888; }
  .evlab { font-size: 10px; fill: #333; }
  .grid { stroke: #e4e4e4; stroke-width: 1; }
  .tick { stroke: #444; stroke-width: 1; }
  .frame { fill: none; stroke: #888; stroke-width: 1; }
  .frame-bg { fill: #fff; }
  .warmup { fill: #f0f0f0; }
  .event { stroke: #555; stroke-width: 1; stroke-dasharray: 4,4; }
  .line { fill: none; stroke-width: 1.6; stroke-linejoin: round; }
"""
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.W}" height="{self.H}" '
                f'viewBox="0 0 {self.W} {self.H}">\n<style>{style}</style>\n'
                f'<rect width="{self.W}" height="{self.H}" fill="#fff"/>\n')
        return head + "\n".join(self.out) + "\n</svg>\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples")
    ap.add_argument("-events")
    ap.add_argument("-out", default="soak.svg")
    ap.add_argument("-bots", type=int)
    ap.add_argument("-secs", type=float)
    ap.add_argument("-warmup", type=float)
    ap.add_argument("-title", default="goworld-rs soak")
    ap.add_argument("-subtitle", default="")
    ap.add_argument("-max-slope-pct-h", type=float)
    a = ap.parse_args()

    procs = load(a.samples)
    events = load_events(a.events)
    if not procs:
        sys.exit("soak-plot.py: no samples")
    all_t = [r["elapsed_s"] for rows in procs.values() for r in rows]
    t_lo, t_hi = min(all_t), max(all_t)

    # Servers (scraped over HTTP) and the rest (from /proc: the bots).
    def is_server(name):
        return name.rstrip("0123456789") in ("dispatcher", "game", "gate")

    servers = [p for p in procs if is_server(p)]
    extras = [p for p in procs if not is_server(p)]
    color = {p: COLORS[i % len(COLORS)] for i, p in enumerate(servers)}
    for p in extras:
        color[p] = EXTRA_COLOR
    gates = [p for p in servers if p.startswith("gate")]

    # Warm-up end.
    why = ""
    if a.warmup is not None:
        warmup_end, why = a.warmup, "given"
    else:
        warmup_end = 0.2 * a.secs if a.secs else 0.0
        why = "20 % of the run" if a.secs else "none"
        if a.bots and gates:
            times = sorted({r["elapsed_s"] for g in gates for r in procs[g]})
            for t in times:
                total = sum(r["clients"] or 0 for g in gates for r in procs[g]
                            if r["elapsed_s"] == t and r["up"])
                if total >= a.bots and t >= 0:
                    if t > warmup_end:
                        warmup_end, why = t, f"all {a.bots} bots connected"
                    break
            else:
                why += f"; the gates never had all {a.bots} clients"
    bots_end = next((e["t"] for e in events if e["event"] == "bots done"), t_hi)
    if a.secs:  # the bots leave at -secs (the games save and destroy their Avatars then)
        bots_end = min(bots_end, a.secs - 1)

    cpu = {p: rates(procs[p], ["cpu_seconds"], 100.0) for p in procs}
    msgs = {p: rates(procs[p], ["msgs_in", "msgs_out"]) for p in servers}
    rss = {p: values(procs[p], "rss_bytes", 1 / MIB) for p in procs}

    legend = [(p, color[p], False) for p in servers] + [
        (f"{p} (CPU only)", color[p], True) for p in extras]
    panels = [
        ("CPU", "% of one core", [(p, color[p], p in extras, cpu[p]) for p in procs]),
        ("Resident memory (RSS)", "MiB", [(p, color[p], False, rss[p]) for p in servers]),
        ("Clients connected to the gate" + ("s" if len(gates) > 1 else ""), "clients",
         [(g, color[g], False, values(procs[g], "clients")) for g in gates]),
        ("Messages per second (in + out, all message types)", "messages/s",
         [(p, color[p], False, msgs[p]) for p in servers]),
    ]
    plot = Plot(t_lo, t_hi)
    svg = plot.render(a.title, a.subtitle, legend, events, panels, warmup_end)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(svg)

    # The table: one line per instance (PID) in the window [warm-up end, bots end].
    print(f"window: {warmup_end:.0f} s to {bots_end:.0f} s after the bots started "
          f"(warm-up: {why})")
    hdr = (f'{"process":<12} {"pid":>7} {"samples":>7} {"from s":>7} {"to s":>7} '
           f'{"mean RSS MiB":>12} {"peak RSS MiB":>12} {"slope KiB/min":>13} '
           f'{"slope %/h":>9} {"mean CPU%":>9} {"peak CPU%":>9} {"mean msg/s":>10}')
    print(hdr)
    failed = []
    for p in procs:
        inst = OrderedDict()
        for r, (_, c), (_, m) in zip(procs[p], cpu[p], msgs.get(p, [(0, None)] * len(procs[p]))):
            t = r["elapsed_s"]
            if not (warmup_end <= t <= bots_end) or not r["up"] or r.get("rss_bytes") is None:
                continue
            d = inst.setdefault(r.get("pid"), {"pts": [], "cpu": [], "msg": []})
            d["pts"].append((t, r["rss_bytes"]))
            if c is not None:
                d["cpu"].append(c)
            if m is not None:
                d["msg"].append(m)
        if not inst:
            print(f"{p:<12} {'-':>7} {0:>7}  (no sample in the window)")
            continue
        for pid, d in inst.items():
            pts = d["pts"]
            mean = sum(v for _, v in pts) / len(pts)
            peak = max(v for _, v in pts)
            slope = lsq_slope(pts)  # bytes per second
            span = pts[-1][0] - pts[0][0]
            s_kib = f"{slope * 60 / 1024:.1f}" if slope is not None else "-"
            s_pct = f"{slope * 3600 / mean * 100:.2f}" if slope is not None and mean else "-"
            mc = f"{sum(d['cpu']) / len(d['cpu']):.1f}" if d["cpu"] else "-"
            pc = f"{max(d['cpu']):.1f}" if d["cpu"] else "-"
            mm = f"{sum(d['msg']) / len(d['msg']):.0f}" if d["msg"] else "-"
            pid_s = f"{int(pid)}" if pid is not None else "-"
            note = ""
            if slope is None or len(pts) < 10 or span < 60:
                note = "  (too short for a slope check)"
            elif (a.max_slope_pct_h is not None and p in servers
                  and slope * 3600 / mean * 100 > a.max_slope_pct_h):
                note = f"  RSS GROWS (> {a.max_slope_pct_h:g} %/h)"
                failed.append(f"{p} pid {pid_s}")
            print(f"{p:<12} {pid_s:>7} {len(pts):>7} {pts[0][0]:>7.0f} {pts[-1][0]:>7.0f} "
                  f"{mean / MIB:>12.1f} {peak / MIB:>12.1f} {s_kib:>13} {s_pct:>9} "
                  f"{mc:>9} {pc:>9} {mm:>10}{note}")
    whole = {p: max((r["rss_bytes"] for r in procs[p] if r["up"] and r.get("rss_bytes")),
                    default=None) for p in procs}
    print("peak RSS over the whole run (MiB): " + ", ".join(
        f"{p} {v / MIB:.1f}" for p, v in whole.items() if v is not None))
    down = {p: sum(1 for r in procs[p] if not r["up"]) for p in servers}
    if any(down.values()):
        print("samples without an answer: " + ", ".join(
            f"{p} {n}" for p, n in down.items() if n))
    print(f"plot: {a.out}")
    if failed:
        print("RSS slope check FAILED for " + ", ".join(failed))
        sys.exit(2)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Scrapes every process of a goworld-rs deployment for a soak run (scripts/soak.sh).

    soak-scrape.py [-config goworld.ini] -out samples.csv [-every 5] [-t0 UNIX_TIME]
                   [-max-secs N] [-pid NAME=PID ...]

Every `-every` seconds (on a fixed schedule, not drifting) it GETs /metrics and /status of
each dispatcher, game and gate the config's [deployment] asks for (each one's http_addr, from
its [dispatcherN]/[gameN]/[gateN] section or the *_common one), parses /metrics with
prometheus_client's text parser and appends one CSV row per process per sample (flushed at
once, so the file is usable while the run goes on). A process that does not answer (a game
mid hot swap) gets a row with up=0 and the reason, and the scraper keeps going. `-pid
NAME=PID` adds a process that serves no /metrics (the bots): its CPU and RSS from /proc.

It stops on SIGTERM or SIGINT (after the row being written) or after -max-secs.

Columns: time (Unix seconds), elapsed_s (time - t0), process, up, pid, state, uptime_s,
cpu_seconds, rss_bytes, clients (gate), entities (sum over types), connections (sum over
links), msgs_in, msgs_out (sums over message types), bytes_in, bytes_out, tick_count,
tick_sum_s, slow_handlers, error.
"""
import argparse
import configparser
import csv
import json
import os
import signal
import sys
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

COLUMNS = [
    "time", "elapsed_s", "process", "up", "pid", "state", "uptime_s", "cpu_seconds",
    "rss_bytes", "clients", "entities", "connections", "msgs_in", "msgs_out", "bytes_in",
    "bytes_out", "tick_count", "tick_sum_s", "slow_handlers", "error",
]

# CSV column -> metric sample name, summed over every label set.
SUMS = {
    "cpu_seconds": "goworld_process_cpu_seconds_total",
    "rss_bytes": "goworld_process_resident_memory_bytes",
    "uptime_s": "goworld_uptime_seconds",
    "clients": "goworld_clients",
    "entities": "goworld_entities",
    "connections": "goworld_connections",
    "msgs_in": "goworld_messages_in_total",
    "msgs_out": "goworld_messages_out_total",
    "bytes_in": "goworld_bytes_read_total",
    "bytes_out": "goworld_bytes_written_total",
    "tick_count": "goworld_tick_seconds_count",
    "tick_sum_s": "goworld_tick_seconds_sum",
    "slow_handlers": "goworld_slow_handlers_total",
}

DEFAULT_HTTP = {"dispatcher": "127.0.0.1:23000", "game": "127.0.0.1:25000", "gate": "127.0.0.1:24000"}


def processes(config_path):
    """[(name, http_addr)] in start order, as goworld's config reader resolves them."""
    cp = configparser.ConfigParser(
        inline_comment_prefixes=(";", "#"), comment_prefixes=(";", "#"),
        interpolation=None, strict=False)
    with open(config_path, encoding="utf-8") as f:
        cp.read_file(f)
    dep = cp["deployment"]
    out = []
    for kind, key in (("dispatcher", "desired_dispatchers"), ("game", "desired_games"),
                      ("gate", "desired_gates")):
        n = int(dep.get(key, "0"))
        common = cp[f"{kind}_common"] if cp.has_section(f"{kind}_common") else {}
        for i in range(1, n + 1):
            sec = cp[f"{kind}{i}"] if cp.has_section(f"{kind}{i}") else {}
            addr = sec.get("http_addr", common.get("http_addr", DEFAULT_HTTP[kind]))
            addr = (addr or "").strip().strip('"')
            if not addr:
                continue  # serves no /metrics
            if addr.startswith(":"):
                addr = "127.0.0.1" + addr
            out.append((f"{kind}{i}", addr))
    return out


def get(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        if r.status != 200:
            raise OSError(f"HTTP {r.status}")
        return r.read().decode("utf-8")


def fmt(v):
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(round(v, 6)) if isinstance(v, float) else str(v)


def scrape_http(addr, timeout):
    row = {}
    try:
        text = get(f"http://{addr}/metrics", timeout)
        sums = {}
        for fam in text_string_to_metric_families(text):
            # A family with no sample (a game with no entity yet) counts as 0.
            for name in (fam.name, fam.name + "_total"):
                sums.setdefault(name, 0.0)
            for s in fam.samples:
                sums[s.name] = sums.get(s.name, 0.0) + s.value
        for col, name in SUMS.items():
            if name in sums:
                row[col] = sums[name]
    except Exception as e:  # down, refused, timed out, unparsable: a row with up=0
        return {"up": 0, "error": f"{type(e).__name__}: {e}".replace("\n", " ")[:200]}
    row["up"] = 1
    try:
        st = json.loads(get(f"http://{addr}/status", timeout))
        row["pid"] = st.get("pid")
        row["state"] = st.get("state")
    except Exception as e:  # /metrics answered: keep the row, note why /status did not
        row["error"] = f"status: {type(e).__name__}: {e}".replace("\n", " ")[:200]
    return row


CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def scrape_proc(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            return {"up": 0, "error": "exited"}
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            rss_pages = int(f.read().split()[1])
        with open("/proc/uptime", encoding="ascii") as f:
            now = float(f.read().split()[0])
        # utime, stime are fields 14 and 15 of stat (12, 13 after the state), starttime 22.
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        up = now - int(fields[19]) / CLK_TCK
        return {"up": 1, "pid": pid, "cpu_seconds": cpu, "rss_bytes": rss_pages * PAGE,
                "uptime_s": round(up, 2), "state": "running"}
    except (OSError, ValueError, IndexError) as e:
        return {"up": 0, "error": f"{type(e).__name__}: {e}"[:200]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-config", help="goworld.ini (none: only the -pid processes)")
    ap.add_argument("-out", required=True)
    ap.add_argument("-every", type=float, default=5.0)
    ap.add_argument("-t0", type=float, default=None, help="time 0 of elapsed_s (default: now)")
    ap.add_argument("-max-secs", type=float, default=None, help="stop after this long")
    ap.add_argument("-pid", action="append", default=[], metavar="NAME=PID")
    a = ap.parse_args()

    procs = processes(a.config) if a.config else []
    extra = []
    for spec in a.pid:
        name, _, pid = spec.partition("=")
        extra.append((name, int(pid)))
    if not procs and not extra:
        sys.exit("soak-scrape.py: no process to scrape")
    t0 = a.t0 if a.t0 is not None else time.time()
    timeout = max(0.5, min(3.0, a.every * 0.6))
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())

    new = not os.path.exists(a.out) or os.path.getsize(a.out) == 0
    with open(a.out, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
            f.flush()
        start = time.time()
        k = 0
        n = 0
        print(f"soak-scrape.py: {len(procs) + len(extra)} processes every {a.every:g} s: "
              + ", ".join(f"{n}={x}" for n, x in procs + extra), flush=True)
        while not stop.is_set():
            now = time.time()
            if a.max_secs is not None and now - start > a.max_secs:
                break
            results = {}

            def one(name, addr):
                results[name] = scrape_http(addr, timeout)

            threads = [threading.Thread(target=one, args=p) for p in procs]
            for t in threads:
                t.start()
            for name, pid in extra:
                results[name] = scrape_proc(pid)
            for t in threads:
                t.join()
            for name, _ in procs + extra:
                row = {c: fmt(v) for c, v in results[name].items()}
                row.update(time=f"{now:.3f}", elapsed_s=f"{now - t0:.3f}", process=name)
                w.writerow(row)
            f.flush()
            n += 1
            k += 1
            # The next sample on the fixed schedule; if a scrape overran, the next slot.
            nxt = start + k * a.every
            while nxt < time.time():
                k += 1
                nxt = start + k * a.every
            stop.wait(nxt - time.time())
    print(f"soak-scrape.py: stopped after {n} samples", flush=True)


if __name__ == "__main__":
    main()

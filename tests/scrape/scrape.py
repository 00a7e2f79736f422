#!/usr/bin/env python3
"""Reads what a goworld-rs observability endpoint served, with reference parsers.

    scrape.py metrics FILE   Prometheus text, parsed by prometheus_client's own parser:
                             one line per sample, `name{k="v",...} value`, sorted.
    scrape.py status FILE    JSON (one object): one line per field, `key json-value`.

A body the parser refuses is an error (exit 1) naming why. The e2e tests run it; the
README's test command installs prometheus_client if it is missing.
"""
import json
import sys


def metrics(text):
    from prometheus_client.parser import text_string_to_metric_families

    lines = []
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("goworld_"):
            raise ValueError(f"metric {family.name} lacks the goworld_ prefix")
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            lines.append(f"{s.name}{{{labels}}} {s.value!r}")
    return sorted(lines)


def status(text):
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return [f"{k} {json.dumps(v, sort_keys=True)}" for k, v in obj.items()]


def main():
    mode, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        out = {"metrics": metrics, "status": status}[mode](text)
    except Exception as e:  # the parser's own words
        print(f"scrape.py: {mode}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print("\n".join(out))


if __name__ == "__main__":
    main()

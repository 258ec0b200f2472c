#!/usr/bin/env bash
# Runs the windowed WordCount example (README.md here) into a temporary
# directory and checks its output against an independent computation: each
# word of each line's text counted in the minute of that line's timestamp.
# No line is further out of order than the watermark allows, so every word
# must count, whatever the batching. Exits non-zero on any difference. Run
# from anywhere after the repository's setup command; leaves no files behind.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

target/debug/weir run examples/windowed-wordcount/job.toml --no-api --quiet --set "sinks.out.path=$out"

python3 - examples/windowed-wordcount/input.txt "$out" <<'PY'
import collections, datetime, json, re, sys
from pathlib import Path

expected = collections.Counter()
for line in Path(sys.argv[1]).read_text().splitlines():
    stamp, text = line.split(" ", 1)
    ts = int(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    minute = ts - ts % 60_000
    for word in re.findall(r"[A-Za-z0-9']+", text):
        expected[(word.lower(), minute, minute + 60_000)] += 1

got = collections.Counter()
for part in sorted(Path(sys.argv[2]).glob("part-*")):
    for line in part.read_text().splitlines():
        r = json.loads(line)
        assert (r["key"], r["start"], r["end"]) not in got, f"window reported twice: {line}"
        got[(r["key"], r["start"], r["end"])] = r["value"]

if got != expected:
    print("weir only:", sorted((got - expected).items()))
    print("expected only:", sorted((expected - got).items()))
    sys.exit(1)

minutes = sorted({m for _, m, _ in got})
hhmm = lambda t: datetime.datetime.fromtimestamp(t / 1000, datetime.timezone.utc).strftime("%H:%M")
print("minute  words  top three")
for m in minutes:
    counts = sorted(((v, k) for (k, s, _), v in got.items() if s == m), key=lambda c: (-c[0], c[1]))
    print(f"{hhmm(m):7} {sum(v for v, _ in counts):5}  " + ", ".join(f"{k} {v}" for v, k in counts[:3]))
print(f"ok: {len(got)} (word, minute) counts over {len(minutes)} minutes, as computed independently")
PY

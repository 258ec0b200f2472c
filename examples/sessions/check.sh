#!/usr/bin/env bash
# Runs the sessions example (README.md here) into a temporary directory and
# checks its output against an independent computation: a replay of the
# clicks in Python with the same watermark rule (largest timestamp read −
# max_out_of_orderness − 1 ms, after every batch of `batch_size` clicks)
# and Flink's session semantics. Exits non-zero on any difference. Run from
# anywhere after the repository's setup command; leaves no files behind.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

target/debug/weir run examples/sessions/job.toml --no-api --quiet \
    --set "sinks.out.path=$out/sessions" --set "sinks.late.path=$out/late"

python3 - examples/sessions "$out" <<'PY'
import datetime, json, re, sys, tomllib
from pathlib import Path

example, out = Path(sys.argv[1]), Path(sys.argv[2])
job = tomllib.loads((example / "job.toml").read_text())

def ms(duration):
    n, unit = re.fullmatch(r"(\d+)(ms|s|m|h)", duration).groups()
    return int(n) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[unit]

gap = ms(job["operators"]["sessions"]["config"]["gap"])
bound = ms(job["sources"]["clicks"]["watermark"]["max_out_of_orderness"])
batch = job["job"]["batch_size"]

def event_time(text):
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)

lines = (example / "clicks.jsonl").read_text().splitlines()
clicks = [(json.loads(l)["user"], event_time(json.loads(l)["ts"]), l) for l in lines]

# Replay: per user, open sessions [start, end) with a count; a click opens
# [ts, ts + gap) and merges with every open session it overlaps or touches;
# if nothing open takes it and its own window is already past the
# watermark, it is late. After each batch the watermark advances and every
# session with end - 1 <= watermark fires. At the end of input, all fire.
open_, fired, late = {}, [], []
watermark, largest = -(2**63), -(2**63)
for i in range(0, len(clicks), batch):
    for user, ts, line in clicks[i : i + batch]:
        start, end, count = ts, ts + gap, 1
        keep = []
        for s in open_.get(user, []):
            if s[0] <= end and start <= s[1]:
                start, end, count = min(start, s[0]), max(end, s[1]), count + s[2]
            else:
                keep.append(s)
        if end - 1 <= watermark:
            late.append(line)
            continue
        open_[user] = keep + [(start, end, count)]
    largest = max([largest] + [ts for _, ts, _ in clicks[i : i + batch]])
    if largest - bound - 1 > watermark:
        watermark = largest - bound - 1
        for user in open_:
            fired += [(user, *s) for s in open_[user] if s[1] - 1 <= watermark]
            open_[user] = [s for s in open_[user] if s[1] - 1 > watermark]
fired += [(user, *s) for user in open_ for s in open_[user]]

def read(directory):
    return [l for p in sorted(directory.glob("part-*")) for l in p.read_text().splitlines()]

got = sorted((r["key"], r["start"], r["end"], r["value"]) for r in map(json.loads, read(out / "sessions")))
got_late = sorted(read(out / "late"))
ok = True
if got != sorted(fired):
    ok = False
    print("sessions differ:\n  weir only:", sorted(set(got) - set(fired)), "\n  expected only:", sorted(set(fired) - set(got)))
if got_late != sorted(late):
    ok = False
    print("late clicks differ:\n  weir:", got_late, "\n  expected:", sorted(late))
if not ok:
    sys.exit(1)

hhmmss = lambda t: datetime.datetime.fromtimestamp(t / 1000, datetime.timezone.utc).strftime("%H:%M:%S")
print("user  first click  session end  clicks")
for user, start, end, count in got:
    print(f"{user:5} {hhmmss(start):12} {hhmmss(end):12} {count:6}")
print("late:", *got_late, sep="\n  ")
print(f"ok: {len(got)} sessions of {len({g[0] for g in got})} users and {len(got_late)} late clicks, as computed independently")
PY

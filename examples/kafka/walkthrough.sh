#!/usr/bin/env bash
# The Kafka walk-through (README.md here): start a broker, load a topic,
# count its words into another topic exactly-once with a kill in the middle,
# and print the result. Run from anywhere after the repository's setup
# command. BROKER_PORT picks the broker's port (default 9092).
set -euo pipefail
cd "$(dirname "$0")"
weir=../../target/debug/weir
tansu=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")
port=${BROKER_PORT:-9092}
set_brokers=(--set "sources.lines.brokers=127.0.0.1:$port" --set "sinks.counts.brokers=127.0.0.1:$port")
rm -rf checkpoints broker.log counts.jsonl

echo "== 1. a broker on 127.0.0.1:$port (data in memory), two topics"
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ > broker.log 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$tansu" topic create lines --partitions 4 --broker "tcp://127.0.0.1:$port"
"$tansu" topic create counts --partitions 4 --broker "tcp://127.0.0.1:$port"

echo "== 2. load input.txt into topic lines"
"$weir" run load.toml --no-api --quiet --set "sinks.lines.brokers=127.0.0.1:$port"

echo "== 3. count it into topic counts, killed once half-way, then run again"
"$weir" run job.toml --no-api --quiet "${set_brokers[@]}" --set sources.lines.rate=4 &
job=$!
sleep 1
kill -9 "$job"
wait "$job" 2>/dev/null || true
"$weir" run job.toml --no-api --quiet "${set_brokers[@]}"

echo "== 4. every word's last count, read back from topic counts"
"$weir" run dump.toml --no-api --quiet --set "sources.counts.brokers=127.0.0.1:$port" > counts.jsonl
python3 - counts.jsonl input.txt <<'PY'
import json, re, sys
last = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    # Exactly-once: each word's updates arrive as 1, 2, 3, … with none repeated.
    assert r["count"] == last.get(r["key"], 0) + 1, f"{r} after {last.get(r['key'])}"
    last[r["key"]] = r["count"]
words = {}
for w in re.findall(r"[\w']+", open(sys.argv[2]).read()):
    words[w.lower()] = words.get(w.lower(), 0) + 1
assert last == words, "counts differ from the input"
top = sorted(last.items(), key=lambda kv: -kv[1])[:5]
print("exact:", len(last), "words; top:", ", ".join(f"{k}={v}" for k, v in top))
PY

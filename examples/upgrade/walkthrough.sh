#!/usr/bin/env bash
# The upgrade walk-through (README.md here): run word-stats v1, stop it with a
# savepoint half-way, resume the job with word-stats v2 — a new state shape
# and a new parallelism — from that savepoint, and show the state carried over.
# Run from anywhere after the repository's setup command.
set -euo pipefail
cd "$(dirname "$0")"
weir=../../target/debug/weir
rm -rf out savepoints checkpoints v1.log

echo "== 1. run v1 (word-stats v1, parallelism 2) with its control API on a free port"
"$weir" run job-v1.toml --api 127.0.0.1:0 2> v1.log &
v1=$!
for _ in $(seq 100); do
    api=$(grep -o 'control API on http://[0-9.:]*' v1.log | sed 's/.*http:\/\///' || true)
    [ -n "$api" ] && break
    sleep 0.1
done
sleep 1   # let it count for a while
"$weir" status --api "$api"

echo "== 2. stop it with a savepoint"
savepoint=$("$weir" stop --savepoint --api "$api")
wait "$v1"
echo "savepoint: $savepoint"
"$weir" inspect "$savepoint"

echo "== 3. resume with v2 (word-stats v2, parallelism 3) from the savepoint"
"$weir" run job-v2.toml --from-savepoint "$savepoint" --no-api --quiet

echo "== 4. the state carried over: w1's updates continue where v1 stopped"
grep -h '"key":"w1"' out/part-* | sort -t: -k3 -n | sed -n '1p;$p'
echo "words first counted by v1 and still counted by v2 (\"since\":1):"
grep -h '"since":1' out/part-* | wc -l

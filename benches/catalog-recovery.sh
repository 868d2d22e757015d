#!/bin/bash
# Recovery benchmark for issue 4: `smack up` a pipeline's services, wait for
# both deploy plans to be COMPLETE, then SIGKILL kafka-1 and cassandra-0 in
# turn and time, from the logs and from polling the scheduler API:
#   kill -> relaunched on the agent (smack's share)
#   relaunched -> the pod's tasks ready again (the service's share)
#
# usage: benches/catalog-recovery.sh PIPELINE.yaml [WORKDIR]
#   SMACK=path/to/smack (default target/debug/smack); the pipeline file must
#   name its services `kafka` and `cassandra` (the fraud example does).
set -euo pipefail
file=$(realpath "$1")
work=$(realpath -m "${2:-/tmp/smack-recovery-bench}")
smack=$(realpath "${SMACK:-target/debug/smack}")
name=$(sed -n 's/^name: *//p' "$file" | head -1)
state=$work/state
rm -rf "$work"; mkdir -p "$work"
cp "$smack" "$work/smack"   # a rebuild of the original must not pull it away
S() { "$work/smack" --state-dir "$state" "$@"; }
ms() { date +%s%3N; }
stamp() { date -u -d "@${1:0:10}.${1:10:3}" +%H:%M:%S.%3N; }

"$work/smack" --state-dir "$state" up "$file" --listen 127.0.0.1:5960 --address-prefix 127.0.5 --port-base 45000 >"$work/up.out" 2>&1 &
up=$!
stop() { kill -INT "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; }
trap stop ERR INT TERM

status() { S plan show deploy --service "$1" --output json 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true; }
for _ in $(seq 1 900); do
  [ "$(status "$name-kafka")" = COMPLETE ] && [ "$(status "$name-cassandra")" = COMPLETE ] && break
  sleep 1
done
echo "deployed at $(stamp "$(ms)"); load: $(cut -d' ' -f1-3 /proc/loadavg)"
sleep 10

# "True" when every task of the pod is RUNNING and ready.
ready() { S pod status --service "$1" --output json 2>/dev/null | python3 -c '
import json, sys
pods = [p for p in json.load(sys.stdin) if p["pod"]["name"] == sys.argv[1]]
ts = pods[0]["tasks"] if pods else []
print(bool(ts) and all(t["state"] == "RUNNING" and t.get("ready") for t in ts))' "$2"; }

for victim in "kafka kafka-1" "cassandra cassandra-0"; do
  set -- $victim
  service=$name-$1 pod=$2
  pid=$(cat "$(ls "$state"/agents/*/sandboxes/"$pod"-*/pid | head -1)")
  t0=$(ms); kill -9 "$pid"
  for _ in $(seq 1 200); do [ "$(ready "$service" "$pod")" = False ] && break; sleep 0.05; done
  prev=$(ms)
  for _ in $(seq 1 4000); do
    now=$(ms)
    [ "$(ready "$service" "$pod")" = True ] && break
    prev=$now; sleep 0.05
  done
  launched=$(sed 's/\x1b\[[0-9;]*m//g' "$state/up.log" | grep "task launched task=$pod-" | tail -1 | cut -c12-23)
  echo "$pod: kill $(stamp "$t0"), relaunched $launched, ready between $(stamp "$prev") and $(stamp "$now")"
  sleep 5
done
stop
echo "stopped: $(tail -1 "$work/up.out")"

#!/usr/bin/env bash
# A real two-node Ray cluster on loopback (`ray start`), a search run against it through RAY_ADDRESS,
# then a clean stop. Usage: examples/two_node_cluster.sh [extra args for examples/cluster_search.py]
#
# Ray 2.60 auth: once ~/.ray/auth_token exists (any local ray.init() creates it), `ray start --head` turns
# token authentication on by itself, and a node or driver without it fails "Unauthenticated". The head,
# every node and the driver must agree: RAY_AUTH_MODE=disabled here (or RAY_AUTH_MODE=token and the same
# token file everywhere).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-6390}
WORK=${WORK:-$(mktemp -d /tmp/two_node.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
ADDRESS=127.0.0.1:$PORT
HEAD_PID="" NODE_PID=""

stop() {  # worker node first, then the head; then forget the cluster, or a later ray.init() hangs on it
  for pid in $NODE_PID $HEAD_PID; do
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  done
  rm -f /tmp/ray/ray_current_cluster
}
trap stop EXIT

wait_for_nodes() {  # wait until $1 nodes are alive; fail fast if a node process died or nothing answers
  for _ in $(seq 60); do
    for pid in $HEAD_PID $NODE_PID; do
      kill -0 "$pid" 2>/dev/null || { echo "a ray start process exited: see $WORK/*.log" >&2; tail -n 5 "$WORK"/*.log >&2; return 1; }
    done
    # connect() probes the address with a socket first: a bare ray.init() would retry for minutes.
    alive=$(timeout 30 python - "$ADDRESS" <<'EOF' 2>/dev/null || echo 0
import sys
import ray
from tune_spacenas.cluster import connect
connect(sys.argv[1], probe_timeout_s=2, log_to_driver=False)
print(sum(n["Alive"] for n in ray.nodes()))
EOF
)
    [ "${alive: -1}" -ge "$1" ] 2>/dev/null && return 0
    sleep 1
  done
  echo "cluster did not come up within 60 tries: see $WORK/*.log" >&2; return 1
}

echo "work dir: $WORK"
setsid ray start --head --port="$PORT" --node-ip-address=127.0.0.1 --num-cpus=1 --resources='{"node0": 1}' \
  --include-dashboard=false --block >"$WORK/head.log" 2>&1 &
HEAD_PID=$!
wait_for_nodes 1
setsid ray start --address="$ADDRESS" --node-ip-address=127.0.0.1 --num-cpus=1 --resources='{"node1": 1}' \
  --block >"$WORK/node.log" 2>&1 &
NODE_PID=$!
wait_for_nodes 2
echo "two nodes up at $ADDRESS (head pid $HEAD_PID, node pid $NODE_PID)"

RAY_ADDRESS=$ADDRESS python examples/cluster_search.py --storage "$WORK/results" --name two-node --spread 2 \
  --summary "$WORK/summary.json" "$@"

python - "$WORK/summary.json" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
nodes = {node for _, node in summary["trials"]}
print(f"trials ran on {len(nodes)} nodes; pushes applied per trial: {sorted(set(summary['store']['push_counts'].values()))}")
sys.exit(0 if len(nodes) == 2 and summary["errors"] == 0 else 1)
EOF

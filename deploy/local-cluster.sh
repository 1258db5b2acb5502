#!/usr/bin/env bash
# local-cluster.sh: a three-node cluster of sidecars on loopback. Each sidecar
# embeds one etcd member, configured the way etcd's classic etcd.conf does it
# (ETCD_NAME, ETCD_INITIAL_CLUSTER, ...). The script builds the binary (or
# takes --bin), starts the three, waits until each answers 200 on
# GET /v1/health, shows `sidecar cluster` and `sidecar status`, then keeps
# them running until Ctrl-C (or stops them at once with --short) and checks
# that each exits 0 after SIGTERM.
#
#   deploy/local-cluster.sh                 # data under ./cluster-data/local, Ctrl-C stops
#   deploy/local-cluster.sh --short         # start, check, stop; what CI runs
#
# Ports: member N (1..3) serves clients on BASE+100*(N-1), peers on the port
# after it and api.http (metrics, health) on BASE+100*(N-1)+11; with the
# default --base-port 26379: 26379/26380/26390, 26479/26480/26490,
# 26579/26580/26590 (apart from the examples' ports).
set -euo pipefail

usage() {
	sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
	cat <<'USAGE'
Options:
  --short          stop the cluster once it is up and checked (CI)
  --base-port N    first client port (default 26379)
  --dir DIR        data, sockets and logs (default ./cluster-data/local; --short: a temporary dir)
  --bin PATH       the sidecar binary to run (default: go build ./cmd/sidecar into DIR)
  --timeout SEC    how long to wait for the cluster to become healthy (default 60)
USAGE
}

short=0 base=26379 dir="" bin="" timeout=60
while [ $# -gt 0 ]; do
	case "$1" in
	--short) short=1 ;;
	--base-port) base=${2:?--base-port needs a port}; shift ;;
	--dir) dir=${2:?--dir needs a directory}; shift ;;
	--bin) bin=${2:?--bin needs a path}; shift ;;
	--timeout) timeout=${2:?--timeout needs seconds}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "local-cluster.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
command -v curl >/dev/null || { echo "local-cluster.sh: needs curl, to ask GET /v1/health" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
cleanup_dir=""
if [ -z "$dir" ]; then
	if [ "$short" = 1 ]; then
		dir=$(mktemp -d "${TMPDIR:-/tmp}/sidecar-cluster.XXXXXX")
		cleanup_dir=$dir
	else
		dir=$repo/cluster-data/local
	fi
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -z "$bin" ]; then
	echo "building sidecar into $dir/bin"
	(cd "$repo" && go build -o "$dir/bin/sidecar" ./cmd/sidecar)
	bin=$dir/bin/sidecar
fi

client_port() { echo $((base + 100 * ($1 - 1))); }
peer_port() { echo $((base + 100 * ($1 - 1) + 1)); }
http_port() { echo $((base + 100 * ($1 - 1) + 11)); }
initial_cluster=""
for n in 1 2 3; do
	initial_cluster+="${initial_cluster:+,}etcd0$n=http://127.0.0.1:$(peer_port "$n")"
done

pids=()
# stop sends SIGTERM to every sidecar started, waits for each and fails
# unless each exited 0.
stop() {
	trap - EXIT INT TERM
	local failed=0 pid n=0
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do
		n=$((n + 1))
		if wait "$pid"; then
			echo "etcd0$n stopped (exit 0)"
		else
			echo "etcd0$n: exit status $? after SIGTERM; its log: $dir/etcd0$n.log" >&2
			failed=1
		fi
	done
	[ -z "$cleanup_dir" ] || [ "$failed" = 1 ] || rm -rf "$cleanup_dir"
	return "$failed"
}
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'status=$?; stop || status=1; exit $status' EXIT

for n in 1 2 3; do
	(
		export ETCD_NAME=etcd0$n
		export ETCD_DATA_DIR=$dir/etcd0$n/etcd
		export ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:$(client_port "$n")
		export ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:$(client_port "$n")
		export ETCD_LISTEN_PEER_URLS=http://127.0.0.1:$(peer_port "$n")
		export ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:$(peer_port "$n")
		export ETCD_INITIAL_CLUSTER=$initial_cluster
		export ETCD_INITIAL_CLUSTER_TOKEN=sidecar-local-cluster
		export ETCD_INITIAL_CLUSTER_STATE=new
		exec "$bin" run --data-dir "$dir/etcd0$n" --socket "$dir/etcd0$n.sock" \
			--http "127.0.0.1:$(http_port "$n")" --log-level warn
	) >"$dir/etcd0$n.log" 2>&1 &
	pids+=($!)
	echo "etcd0$n: pid $!, clients http://127.0.0.1:$(client_port "$n"), socket $dir/etcd0$n.sock, log $dir/etcd0$n.log"
done

deadline=$((SECONDS + timeout))
for n in 1 2 3; do
	until curl -fsS -o /dev/null "http://127.0.0.1:$(http_port "$n")/v1/health" 2>/dev/null; do
		if ! kill -0 "${pids[n - 1]}" 2>/dev/null; then
			echo "etcd0$n exited before it was healthy; its log:" >&2
			cat "$dir/etcd0$n.log" >&2
			exit 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "etcd0$n not healthy within ${timeout}s; its log: $dir/etcd0$n.log" >&2
			exit 1
		fi
		sleep 0.2
	done
	echo "etcd0$n healthy: GET http://127.0.0.1:$(http_port "$n")/v1/health answered 200"
done

"$bin" cluster --socket "$dir/etcd01.sock"
"$bin" status --socket "$dir/etcd02.sock"
members=$("$bin" cluster --json --socket "$dir/etcd03.sock" | grep -o '"name": *"etcd0[123]"' | sort -u | wc -l)
if [ "$members" -ne 3 ]; then
	echo "sidecar cluster lists $members of the members etcd01..etcd03, want 3" >&2
	exit 1
fi
echo "cluster up: 3 members, all healthy"

if [ "$short" = 0 ]; then
	trap 'exit 0' INT TERM # a clean stop after Ctrl-C exits 0
	echo "Ctrl-C stops the three sidecars; meanwhile, e.g.:"
	echo "  $bin services --socket $dir/etcd01.sock"
	echo "  curl -s http://127.0.0.1:$(http_port 1)/metrics | grep ^sidecar_"
	while :; do sleep 3600 & wait $! || true; done
fi

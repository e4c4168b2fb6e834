#!/usr/bin/env bash
# Measures omoi against its targets on this machine and prints one table:
# figure, value, unit, target, ratio to the target, spread. Also writes
# target/bench/results.json. Builds in release mode first.
#
# Every coordinator figure runs `omoi serve` as a process of its own on loopback; the load
# (senders, SSE subscribers, task sandboxes' reports) comes from omoi-bench, another process.
# BENCH_RUNS sets the worker's runs (default 30); BENCH_SKIP_POSTGRES=1 skips PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
figures="$out/figures.jsonl"
: > "$figures"
started=$(date +%s)
# Each step's line carries the seconds since the start, so a slow step shows.
log() { echo "bench: [$(($(date +%s) - started)) s] $*" >&2; }

log "building the static worker and the release binaries"
worker=$(scripts/build-worker.sh | tail -n 1)
cargo build --release --locked -p omoi-tests --bin omoi-bench -p omoi-coordinator --bin omoi \
  --example kubernetes_load >&2
bench=target/release/omoi-bench
omoi=target/release/omoi
built=$(date +%s)

emit() { # figure value unit target spread
  printf '{"figure":"%s","value":%s,"unit":"%s","target":%s,"spread":"%s"}\n' "$@" >> "$figures"
}

size=$(stat -c %s "$worker")
emit "worker static binary size" "$(awk "BEGIN{print $size/1048576}")" "MiB" 10 "one build"

log "worker start-up and per-phase time"
"$bench" worker --worker "$worker" --runs "${BENCH_RUNS:-30}" >> "$figures"

log "provider layer, model proxy, agent loop, prompt caching; the CLI agents when they can be fetched"
if clis=$(scripts/fetch-agent-clis.sh 2>/dev/null); then
  OMOI_TEST_CLAUDE_BIN=$(sed -n 1p <<<"$clis")
  OMOI_TEST_CODEX_BIN=$(sed -n 2p <<<"$clis")
  export OMOI_TEST_CLAUDE_BIN OMOI_TEST_CODEX_BIN
else
  log "scripts/fetch-agent-clis.sh failed: the CLI agents' figures are skipped"
fi
cargo bench --locked -p omoi-worker --bench overhead 2>/dev/null | grep '^{' >> "$figures"

log "worker peak memory over a scripted full spec"
if [ ! -x /usr/bin/time ]; then apt-get install -y -qq time >&2; fi
peaks=()
for n in 1 2 3 4 5; do
  ws=$(mktemp -d)
  cp -r tests/fixtures/sample-repo/. "$ws"
  kib=$(env -i SPEC_ID=bench SPEC_PHASE=all SPEC_TITLE="Add a --shout option" OMOI_LLM=scripted \
    OMOI_SCRIPT="$PWD/tests/fixtures/sample-script.json" WORKSPACE="$ws" OMOI_LOG=error \
    /usr/bin/time -f %M "$worker" 2>&1 >/dev/null | tail -n 1)
  rm -rf "$ws"
  peaks+=("$kib")
done
sorted=$(printf '%s\n' "${peaks[@]}" | sort -n)
median=$(echo "$sorted" | sed -n 3p)
emit "worker peak memory, scripted full spec" "$(awk "BEGIN{print $median/1024}")" "MiB" 16 \
  "min $(echo "$sorted" | head -n1) KiB … max $(echo "$sorted" | tail -n1) KiB (5 runs)"

log "spec gate: tasks gate on 100,000 tasks (a cycle, a chain), EARS corpus precision and recall"
scripts/bench-spec-gate.sh "$worker" 3 >> "$figures"

log "coordinator ingest throughput, SQLite (50 senders, batches of 100)"
"$bench" ingest --omoi "$omoi" --label SQLite --target 50000 >> "$figures"
log "the same with one event per request (how the original system's reporter sends)"
"$bench" ingest --omoi "$omoi" --label "SQLite, one event per request" --batch 1 --batches 100 \
  --runs 3 >> "$figures"

if [ "${BENCH_SKIP_POSTGRES:-0}" != 1 ]; then
  pg_url=$(scripts/start-postgres.sh)
  # Runs omoi-bench with `--database URL` of a fresh database, dropped afterwards.
  on_fresh_database() {
    local database="omoi_bench_$$_$1" status=0
    shift
    psql "$pg_url" -qc "CREATE DATABASE $database" >&2
    "$bench" "$@" --database "${pg_url%/*}/$database" >> "$figures" || status=$?
    # No FORCE: the servers have stopped, and a plain DROP also ends an autovacuum worker busy
    # on the fresh rows, which FORCE may not (it is the superuser's process).
    for _ in 1 2 3 4 5; do
      psql "$pg_url" -qc "DROP DATABASE IF EXISTS $database" >&2 && break
      sleep 1
    done
    return "$status"
  }
  log "coordinator ingest throughput, PostgreSQL (50 senders, batches of 100)"
  on_fresh_database one ingest --omoi "$omoi" --label PostgreSQL
  log "the same on two replicas sharing the database (senders alternate)"
  on_fresh_database two ingest --omoi "$omoi" --replicas 2 --label "PostgreSQL, two replicas"
  log "SSE latency across replicas, ingest on A → 100 subscribers on B"
  on_fresh_database stream stream --omoi "$omoi" --replicas 2
fi

log "SSE latency, ingest → 100 subscribers"
"$bench" stream --omoi "$omoi" >> "$figures"

log "execute → agent.started, local provider, real worker"
"$bench" execute --omoi "$omoi" --worker "$worker" >> "$figures"

log "coordinator memory with 1,000 specs"
"$bench" memory --omoi "$omoi" >> "$figures"

log "scheduler: 1,000 no-op tasks through the local provider"
"$bench" scheduler --omoi "$omoi" --worker "$worker" >> "$figures"
log "scheduler: the same with a warm pool of 64 standbys (the stand-in in standby mode)"
"$bench" scheduler --omoi "$omoi" --worker "$worker" --warm-pool 64 >> "$figures"

log "dashboard: graph layout of 1,000 tasks"
cargo bench --locked -p omoi-coordinator --bench dashboard 2>/dev/null | grep '^{' >> "$figures"
log "dashboard: spec page of 1,000 tasks, ingest → page update"
"$bench" dashboard --omoi "$omoi" --worker "$worker" >> "$figures"

log "sandbox start-up, local provider"
"$bench" sandbox-start --provider local --omoi "$omoi" --worker "$worker" >> "$figures"
log "sandbox start-up from a warm pool of 2, local provider; the pool's refill rate"
"$bench" sandbox-start --provider local --warm-pool 2 --omoi "$omoi" --worker "$worker" >> "$figures"
if docker image inspect omoi-sandbox:latest >/dev/null 2>&1; then
  log "sandbox start-up, docker provider"
  "$bench" sandbox-start --provider docker --omoi "$omoi" --worker "$worker" >> "$figures"
  log "sandbox start-up from a warm pool of 2, docker provider; the pool's refill rate"
  "$bench" sandbox-start --provider docker --warm-pool 2 --omoi "$omoi" --worker "$worker" \
    >> "$figures"
  log "omoi demo on docker with a warm pool of 4, launch → completed (3 runs)"
  demo_secs=()
  for _ in 1 2 3; do
    line=$("$omoi" demo --provider docker --warm-pool 4 2>&1 >/dev/null | grep -o 'launch → completed in [0-9.]* s' || true)
    demo_secs+=("$(echo "$line" | grep -o '[0-9.]*' | head -n 1)")
  done
  if [ -n "${demo_secs[0]}" ] && [ -n "${demo_secs[1]}" ] && [ -n "${demo_secs[2]}" ]; then
    sorted=$(printf '%s\n' "${demo_secs[@]}" | sort -n)
    emit "omoi demo on docker, warm pool of 4, launch → completed, median" "$(echo "$sorted" | sed -n 2p)" \
      "s" 1.0 "$(echo "$sorted" | tr '\n' ' ')s (3 runs)"
  else
    log "omoi demo on docker did not complete: ${demo_secs[*]}"
  fi
else
  log "no omoi-sandbox:latest image (scripts/build-images.sh builds it); skipping docker start-up"
fi

log "kubernetes provider: 1,000 pods against the fake API server"
target/release/examples/kubernetes_load --bench "$bench" --sandboxes 1000 >> "$figures"
target/release/examples/kubernetes_load --bench "$bench" --sandboxes 1000 --api sandbox >> "$figures"

finished=$(date +%s)
emit "bench.sh wall time, build included" "$((finished - started))" "s" 600 \
  "of which building $((built - started)) s"
"$bench" table "$figures" "$out/results.json"
log "wrote $out/results.json"

#!/usr/bin/env bash
# Measures omoi against its targets on this machine and prints one table:
# figure, value, unit, target, ratio to the target, spread. Also writes
# target/bench/results.json. Builds in release mode first.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
figures="$out/figures.jsonl"
: > "$figures"
log() { echo "bench: $*" >&2; }

log "building the static worker and the release binaries"
worker=$(scripts/build-worker.sh | tail -n 1)
cargo build --release --locked -p omoi-tests --bin omoi-bench >&2
bench=target/release/omoi-bench

emit() { # figure value unit target spread
  printf '{"figure":"%s","value":%s,"unit":"%s","target":%s,"spread":"%s"}\n' "$@" >> "$figures"
}

size=$(stat -c %s "$worker")
emit "worker static binary size" "$(awk "BEGIN{print $size/1048576}")" "MiB" 10 "one build"

log "worker start-up and per-phase time"
"$bench" worker --worker "$worker" --runs "${BENCH_RUNS:-30}" >> "$figures"

log "provider layer and agent loop overhead"
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

"$bench" table "$figures" "$out/results.json"
log "wrote $out/results.json"

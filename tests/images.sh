#!/usr/bin/env bash
# Smoke test of the sandbox images: builds them with scripts/build-images.sh (arguments are passed
# on, e.g. --worker-bin PATH; without it the static worker is built first), then checks what each
# image holds and that the worker runs in both, ending with a full local spec run on the sample
# repository inside omoi-sandbox.
# Every container it creates carries a label unique to this run and is removed on exit.
# Prints one line per check on stderr; exits 1 if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

run_label="org.omoi.smoke-run=$$-$(date +%s)"
work=$(mktemp -d "${TMPDIR:-/tmp}/omoi-images-test.XXXXXX")
cleanup() {
  local ids
  ids=$(docker ps -aq --filter "label=$run_label" 2>/dev/null || true)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086 # one id per word
    docker rm -f $ids >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failures=0
pass() { echo "ok    $1" >&2; }
fail() {
  echo "FAIL  $1" >&2
  shift
  if [ "$#" -gt 0 ]; then printf '      %s\n' "$@" >&2; fi
  failures=$((failures + 1))
}
# expect NAME WANT GOT: passes when the two strings are equal.
expect() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "want: $2" "got:  $3"; fi
}
# Runs a throwaway container of this test run; arguments as for `docker run`.
run() { docker run --rm --label "$run_label" "$@"; }
mib() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.1f", $1 / 1048576 }'; }
under() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# --- build -------------------------------------------------------------------------------------
# Both builds below use one frozen copy of the worker, so that a rebuild of the worker between them
# (cargo replaces the binary in place) cannot change what the second build sees.
args=("$@")
if [[ " $* " != *" --worker-bin "* ]]; then
  built=$(scripts/build-worker.sh | tail -n 1)
  cp "$built" "$work/omoi-worker"
  args=(--worker-bin "$work/omoi-worker" "${args[@]}")
fi
names=$(scripts/build-images.sh "${args[@]}")
expect "build-images.sh prints the image names" \
  "omoi-worker:latest omoi-worker:<key> omoi-sandbox:latest omoi-sandbox:<key>" \
  "$(echo "$names" | sed -E 's/:[0-9a-f]{12}$/:<key>/' | paste -sd' ' -)"
# A second build with the same inputs reuses all three images.
expect "build-images.sh again: everything reused" "reused reused reused" \
  "$(scripts/build-images.sh "${args[@]}" 2>&1 >/dev/null |
    sed -n -E 's/^build-images: (reused|building) +omoi-.*/\1/p' | paste -sd' ' -)"
version=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' \
  omoi-worker:latest)

# --- omoi-worker -------------------------------------------------------------------------------
expect "omoi-worker: entrypoint" '["/omoi-worker"]' \
  "$(docker image inspect -f '{{json .Config.Entrypoint}}' omoi-worker:latest)"
cid=$(docker create --label "$run_label" omoi-worker:latest)
expect "omoi-worker: holds only the worker and the CA bundle" \
  "etc/ssl/certs/ca-certificates.crt omoi-worker" \
  "$(docker export "$cid" | tar -tf - | grep -v -e '/$' -e '^\.dockerenv$' \
    -e '^etc/\(hostname\|hosts\|resolv.conf\|mtab\)$' -e '^\(dev\|proc\|sys\)/' | sort | paste -sd' ' -)"
docker rm "$cid" >/dev/null
size=$(mib omoi-worker:latest)
if under "$size" 15; then pass "omoi-worker: $size MiB < 15 MiB"; else fail "omoi-worker: $size MiB, over 15 MiB"; fi
expect "omoi-worker: --version" "omoi-worker $version" \
  "$(run omoi-worker:latest --version 2>&1)"

# With OMOIOS_API_URL set and a configuration error (the script file is missing), the worker
# builds its HTTP client, which needs the CA bundle, and reports the failure to the coordinator.
# No network: the report cannot be delivered, which the worker logs before it exits with 2.
set +e
out=$(run --network none -e NO_COLOR=1 -e OMOIOS_API_URL=http://127.0.0.1:9 \
  -e SANDBOX_ID=sbx-smoke -e SANDBOX_TOKEN=smoke-token -e SPEC_ID=demo -e SPEC_PHASE=all \
  -e SPEC_TITLE=smoke -e OMOI_LLM=scripted -e OMOI_SCRIPT=/missing-script.json \
  omoi-worker:latest 2>&1)
code=$?
set -e
if [ "$code" -eq 2 ] && echo "$out" | grep -q "could not deliver events" &&
  [ "$(echo "$out" | tail -n 1)" = "omoi-worker: OMOI_SCRIPT: /missing-script.json is not a readable file" ]; then
  pass "omoi-worker: starts with OMOIOS_API_URL set (HTTP client built, delivery attempted)"
else
  fail "omoi-worker: run with OMOIOS_API_URL set" "exit code $code" "$out"
fi

# --- omoi-sandbox ------------------------------------------------------------------------------
expect "omoi-sandbox: entrypoint" '["/usr/local/bin/omoi-worker"]' \
  "$(docker image inspect -f '{{json .Config.Entrypoint}}' omoi-sandbox:latest)"
size=$(mib omoi-sandbox:latest)
if under "$size" 150; then pass "omoi-sandbox: $size MiB < 150 MiB"; else fail "omoi-sandbox: $size MiB, over 150 MiB"; fi
expect "omoi-sandbox: --version" "omoi-worker $version" \
  "$(run omoi-sandbox:latest --version 2>&1)"
got=$(run --entrypoint git omoi-sandbox:latest --version 2>&1 || true)
if [[ $got =~ ^git\ version\ [0-9]+\.[0-9]+ ]]; then pass "omoi-sandbox: $got"; else fail "omoi-sandbox: git --version" "$got"; fi
# shellcheck disable=SC2016 # expanded by the shell in the container
expect "omoi-sandbox: user, work directory, home" "1000 omoi /work /home/omoi" \
  "$(run --entrypoint sh omoi-sandbox:latest -c 'echo "$(id -u) $(id -un) $(pwd) $HOME"' 2>&1)"
expect "omoi-sandbox: git commits and clones" "first commit" \
  "$(run --entrypoint sh omoi-sandbox:latest -c '
    set -e
    git init -q origin
    git -C origin -c user.name=smoke -c user.email=smoke@example.com commit -q --allow-empty -m "first commit"
    git clone -q origin clone
    git -C clone log --format=%s' 2>&1)"

# A full local spec run on the sample repository. The files go in through `docker cp` as a tar
# stream owned by uid 1000, so that the worker (user omoi) can write its artifacts.
cid=$(docker create --label "$run_label" -e NO_COLOR=1 \
  -e SPEC_ID=demo -e SPEC_PHASE=all -e SPEC_TITLE="Add a --shout option to greet" \
  -e OMOI_LLM=scripted -e OMOI_SCRIPT=/work/sample-script.json -e WORKSPACE=/work/repo \
  omoi-sandbox:latest)
tar --owner=1000 --group=1000 --numeric-owner --transform 's,^sample-repo,repo,' \
  -C tests/fixtures -cf - sample-repo sample-script.json | docker cp - "$cid:/work"
set +e
timeout 300 docker start -a "$cid" >"$work/spec.out" 2>"$work/spec.err"
code=$?
set -e
last=$(grep '^{' "$work/spec.out" | tail -n 1 || true)
if [ "$code" -eq 0 ] && [[ $last == *'"type":"agent.completed","data":{"success":true'* ]]; then
  pass "omoi-sandbox: full spec run ends with agent.completed, success true"
else
  fail "omoi-sandbox: full spec run (exit code $code)" "last event: ${last:-none}" \
    "stderr: $(tail -n 5 "$work/spec.err")"
fi
artifacts=$(docker cp "$cid:/work/repo/.omoi" - 2>/dev/null | tar -tf - 2>/dev/null |
  grep -E '^\.omoi/(spec|checkpoint)\.json$' | sort | paste -sd' ' - || true)
expect "omoi-sandbox: the spec and checkpoint stay in the workspace" \
  ".omoi/checkpoint.json .omoi/spec.json" "$artifacts"

if [ "$failures" -gt 0 ]; then
  echo "images: $failures check(s) failed" >&2
  exit 1
fi
echo "images: all checks passed" >&2

#!/usr/bin/env bash
# Builds one of omoi's binaries statically linked for x86_64-unknown-linux-musl (rustls, no
# OpenSSL, stripped), checks that it is static, and prints its path on the last line of stdout.
#   scripts/build-static.sh worker       omoi-worker, profile dist (fat LTO, one codegen unit,
#                                        panic=abort): the binary baked into every sandbox
#   scripts/build-static.sh coordinator  omoi, profile release (thin LTO; panics unwind, so a
#                                        panicking request or task does not end the server)
# scripts/build-worker.sh is `build-static.sh worker`. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "build-static: $*" >&2; }

case "${1:-}" in
worker) package=omoi-worker bin=omoi-worker profile=dist ;;
coordinator) package=omoi-coordinator bin=omoi profile=release ;;
*)
  log "usage: scripts/build-static.sh worker|coordinator (got '${1:-}')"
  exit 2
  ;;
esac

target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi
if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1 && ! command -v musl-gcc >/dev/null 2>&1; then
  log "installing musl-tools (the C compiler the crypto crates and SQLite need for musl)"
  apt-get update -qq >&2 && apt-get install -y -qq musl-tools >&2
fi
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-$(command -v x86_64-linux-musl-gcc || command -v musl-gcc)}"
if [ "$package" = omoi-worker ]; then
  # The worker's only C is aws-lc (rustls's crypto). Its size, not its speed, is what counts
  # there: a worker's TLS traffic is a few model requests. -Os for aws-lc's C (the hand-written
  # assembly keeps its speed), and no AVX-512 AES-GCM and RSAZ (~700 KiB of unrolled assembly
  # for bulk throughput on AVX-512 CPUs; AES-GCM keeps its AES-NI and AVX paths). cc puts these
  # flags after aws-lc-sys's own, so -Os wins over its -O3. See BENCHMARKS.md.
  export CFLAGS_x86_64_unknown_linux_musl="${CFLAGS_x86_64_unknown_linux_musl:-} -Os -DMY_ASSEMBLER_IS_TOO_OLD_FOR_512AVX"
fi

cargo build --locked --profile "$profile" --target "$target" -p "$package" --bin "$bin" >&2
path="target/$target/$profile/$bin"

# A static binary has no program interpreter and no dynamic section.
if readelf -l "$path" | grep -q "Requesting program interpreter"; then
  log "$path is dynamically linked"
  exit 1
fi
if readelf -d "$path" 2>/dev/null | grep -q "(NEEDED)"; then
  log "$path needs shared libraries"
  exit 1
fi
if nm -D "$path" 2>/dev/null | grep -qi ssl; then
  log "$path links OpenSSL"
  exit 1
fi
log "$bin static, $(stat -c %s "$path") bytes"
echo "$path"

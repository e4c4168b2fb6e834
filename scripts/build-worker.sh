#!/usr/bin/env bash
# Builds the static omoi-worker (x86_64-unknown-linux-musl, rustls, fat LTO, stripped) and
# checks that it is statically linked. Prints the path of the binary on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi
if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1 && ! command -v musl-gcc >/dev/null 2>&1; then
  echo "build-worker: installing musl-tools (the C compiler the crypto crates need for musl)" >&2
  apt-get update -qq >&2 && apt-get install -y -qq musl-tools >&2
fi
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-$(command -v x86_64-linux-musl-gcc || command -v musl-gcc)}"

cargo build --locked --profile dist --target "$target" -p omoi-worker --bin omoi-worker >&2
bin="target/$target/dist/omoi-worker"

# A static binary has no program interpreter and no dynamic section.
if readelf -l "$bin" | grep -q "Requesting program interpreter"; then
  echo "build-worker: $bin is dynamically linked" >&2
  exit 1
fi
if readelf -d "$bin" 2>/dev/null | grep -q "(NEEDED)"; then
  echo "build-worker: $bin needs shared libraries" >&2
  exit 1
fi
if nm -D "$bin" 2>/dev/null | grep -qi ssl; then
  echo "build-worker: $bin links OpenSSL" >&2
  exit 1
fi
echo "build-worker: static, $(stat -c %s "$bin") bytes" >&2
echo "$bin"

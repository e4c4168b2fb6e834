#!/usr/bin/env bash
# Builds the static omoi-worker (x86_64-unknown-linux-musl, rustls, fat LTO, stripped) and
# checks that it is statically linked. Prints the path of the binary on the last line.
# The machinery is scripts/build-static.sh, which also builds the static coordinator.
set -euo pipefail
exec "$(dirname "$0")/build-static.sh" worker

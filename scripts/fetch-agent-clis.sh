#!/usr/bin/env bash
# Downloads the pinned Claude Code and Codex CLIs (the Linux x86_64 wheels of `claude-agent-sdk`
# and `openai-codex-cli-bin`, which carry the real binaries) with pip, checks their sha256,
# caches them, unpacks the binaries and prints their two paths: Claude Code first, then Codex.
#
#   scripts/fetch-agent-clis.sh [--dir DIR]     (default: ~/.cache/omoi/agent-clis)
#
# Nothing is installed: the wheels are only unpacked. A second run with the wheels in the cache
# downloads nothing. A wheel whose hash is not the pinned one is refused (exit 1).
set -euo pipefail

CLAUDE_SDK_VERSION=0.2.189
CLAUDE_SDK_SHA256=b26a6a30a4e2cb025a6f5c95e1ce4469b38fcc51015c392f627bea7c948d67ad
CODEX_VERSION=0.163.0
CODEX_SHA256=76db41fb07fdf9ddacbe892b48d21dfde270031ec0f5666b5e558114355f006d

dir="${HOME}/.cache/omoi/agent-clis"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fetch-agent-clis.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

python=$(command -v python3 || true)
[ -n "$python" ] || { echo "fetch-agent-clis.sh: python3 is needed (pip and unzip)" >&2; exit 1; }

mkdir -p "$dir/wheels"
claude_wheel="$dir/wheels/claude_agent_sdk-${CLAUDE_SDK_VERSION}-py3-none-manylinux_2_17_x86_64.whl"
codex_wheel="$dir/wheels/openai_codex_cli_bin-${CODEX_VERSION}-py3-none-manylinux_2_17_x86_64.whl"

hash_ok() { # FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

if ! hash_ok "$claude_wheel" "$CLAUDE_SDK_SHA256" || ! hash_ok "$codex_wheel" "$CODEX_SHA256"; then
  requirements="$dir/wheels/requirements.txt"
  cat >"$requirements" <<EOF
claude-agent-sdk==${CLAUDE_SDK_VERSION} --hash=sha256:${CLAUDE_SDK_SHA256}
openai-codex-cli-bin==${CODEX_VERSION} --hash=sha256:${CODEX_SHA256}
EOF
  echo "fetch-agent-clis.sh: downloading claude-agent-sdk ${CLAUDE_SDK_VERSION} and openai-codex-cli-bin ${CODEX_VERSION}" >&2
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    --platform manylinux_2_17_x86_64 --python-version 3.11 --implementation py \
    -r "$requirements" -d "$dir/wheels" >&2
fi
for pair in "$claude_wheel:$CLAUDE_SDK_SHA256" "$codex_wheel:$CODEX_SHA256"; do
  if ! hash_ok "${pair%%:*}" "${pair##*:}"; then
    echo "fetch-agent-clis.sh: ${pair%%:*} is missing or its sha256 is not ${pair##*:}" >&2
    exit 1
  fi
done

# Unpacks the members of WHEEL under PREFIX into OUT, executable, in the wheel's layout (Codex
# looks for its sandbox helper `codex-resources/bwrap` beside its `bin/`), unless OUT is there.
unpack() { # WHEEL PREFIX OUT
  [ -d "$3" ] && return 0
  rm -rf "$3.partial"
  mkdir -p "$3.partial"
  "$python" - "$1" "$2" "$3.partial" <<'EOF'
import os, shutil, sys, zipfile
wheel, prefix, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    for member in archive.infolist():
        name = member.filename
        if member.is_dir() or not name.startswith(prefix) or name.endswith((".py", ".json")):
            continue
        target = os.path.join(out, name[len(prefix):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with archive.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.chmod(target, 0o755)
EOF
  mv "$3.partial" "$3"
}

unpack "$claude_wheel" claude_agent_sdk/_bundled/ "$dir/claude-${CLAUDE_SDK_VERSION}"
unpack "$codex_wheel" codex_cli_bin/ "$dir/codex-${CODEX_VERSION}"
claude="$dir/claude-${CLAUDE_SDK_VERSION}/claude"
codex="$dir/codex-${CODEX_VERSION}/bin/codex"
for bin in "$claude" "$codex"; do
  [ -x "$bin" ] || { echo "fetch-agent-clis.sh: $bin is missing from its wheel" >&2; exit 1; }
done

echo "$claude"
echo "$codex"

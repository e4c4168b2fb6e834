#!/usr/bin/env bash
# Builds the sandbox images from what this machine has; nothing is pulled from a registry.
#   omoi-sandbox-base:<key>  Debian (debootstrap minbase + images/sandbox-base/packages), imported
#   omoi-worker:<key>        FROM scratch: the static worker at /omoi-worker and a CA bundle
#   omoi-sandbox:<key>       the base + the worker at /usr/local/bin/omoi-worker + user omoi
#   omoi-sandbox-agents:<key> (with --with-agents) the sandbox + the Claude Code and Codex CLIs
#   omoi:<key>               (with --with-coordinator) FROM scratch: the static coordinator at
#                            /usr/local/bin/omoi, a CA bundle, users root and omoi (1000), /data
#                            and /tmp; runs as omoi in /data (images/kubernetes/ deploys it)
# and moves the :latest tags of omoi-worker and omoi-sandbox (and omoi-sandbox-agents, omoi) to
# what was built or found.
#
# Every image is content-addressed: <key> is the first 12 hex digits of a SHA-256 over the inputs
# that define the image, and the whole hash is the image's org.omoi.content-key label. An image
# whose tag and label match is reused, not rebuilt:
#   base     the Debian suite and mirrors, the package list, images/sandbox-base/rootfs.sh and the
#            `docker import` settings below
#   worker   the worker binary, images/worker/Dockerfile and the CA bundle
#   sandbox  the worker binary, images/sandbox/Dockerfile and the base image id
#   agents   the sandbox image id, images/sandbox-agents/Dockerfile and the sha256 of every CLI
#            file copied in (from scripts/fetch-agent-clis.sh: pinned wheels, hashes checked)
#   omoi     the coordinator binary, images/coordinator/Dockerfile, the CA bundle and the small
#            root filesystem tarball made below (its files have fixed owners and times)
# So an unchanged worker rebuilds nothing, and a new worker rebuilds only the two small images.
#
# Usage: scripts/build-images.sh [--worker-bin PATH] [--refresh-base] [--with-agents [--agents-dir DIR]]
#                                [--with-coordinator [--coordinator-bin PATH]]
#   --worker-bin PATH  use this static worker instead of running scripts/build-worker.sh
#   --with-coordinator also build omoi, the coordinator's image (its static build takes minutes,
#                      so it is not built unless asked for)
#   --coordinator-bin PATH  use this static coordinator instead of running
#                      scripts/build-static.sh coordinator (implies --with-coordinator)
#   --with-agents      also build omoi-sandbox-agents from the CLIs of scripts/fetch-agent-clis.sh
#                      (which downloads the pinned wheels with pip once, then uses its cache)
#   --agents-dir DIR   the CLIs' cache directory, passed to fetch-agent-clis.sh --dir
#   --refresh-base     rebuild the base even if one with the same key exists (to take Debian's
#                      latest security updates; the key names the inputs, not package versions)
# Environment: OMOI_DEBIAN_SUITE (bookworm), OMOI_DEBIAN_MIRROR, OMOI_DEBIAN_SECURITY_MIRROR,
#   OMOI_CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt), OMOI_IMAGE_CACHE (downloaded .debs).
# Progress goes to stderr; stdout gets only the image names, one per line.
# Building the base needs root or sudo (debootstrap, chroot); reusing it does not.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=${OMOI_DEBIAN_SUITE:-bookworm}
mirror=${OMOI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${OMOI_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ca_bundle=${OMOI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
deb_cache=${OMOI_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/omoi-images}/debs

log() { echo "build-images: $*" >&2; }
die() {
  log "$*"
  exit 1
}

worker_bin=""
refresh_base=0
with_agents=0
agents_dir=""
with_coordinator=0
coordinator_bin=""
while [ "$#" -gt 0 ]; do
  case "$1" in
  --worker-bin)
    [ "$#" -ge 2 ] || die "--worker-bin needs a path"
    worker_bin=$2
    shift 2
    ;;
  --refresh-base)
    refresh_base=1
    shift
    ;;
  --with-agents)
    with_agents=1
    shift
    ;;
  --agents-dir)
    [ "$#" -ge 2 ] || die "--agents-dir needs a directory"
    agents_dir=$2
    shift 2
    ;;
  --with-coordinator)
    with_coordinator=1
    shift
    ;;
  --coordinator-bin)
    [ "$#" -ge 2 ] || die "--coordinator-bin needs a path"
    coordinator_bin=$2
    with_coordinator=1
    shift 2
    ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 0
    ;;
  *) die "unknown argument '$1' (see --help)" ;;
  esac
done

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info failed)"
[ -r "$ca_bundle" ] || die "no CA bundle at $ca_bundle (install ca-certificates or set OMOI_CA_BUNDLE)"

started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/omoi-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
sha() { sha256sum | cut -d' ' -f1; }
file_sha() { sha256sum <"$1" | cut -d' ' -f1; }

# The content key an image carries, or nothing when the image does not exist.
image_key() { docker image inspect -f '{{index .Config.Labels "org.omoi.content-key"}}' "$1" 2>/dev/null || true; }

# BuildKit when the buildx plugin is there; otherwise the classic builder (Docker Engines without
# buildx still ship it). Neither pulls: every FROM is scratch or a local image.
docker_build() {
  if docker buildx version >/dev/null 2>&1; then
    DOCKER_BUILDKIT=1 docker build --pull=false "$@" >&2
  else
    DOCKER_BUILDKIT=0 docker build --pull=false "$@" >&2
  fi
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "building the base image needs root (debootstrap); run as root or install sudo"
  fi
}

# --- the worker --------------------------------------------------------------------------------
if [ -z "$worker_bin" ]; then
  log "building the static worker (scripts/build-worker.sh)"
  worker_bin=$(scripts/build-worker.sh | tail -n 1)
fi
if [ ! -f "$worker_bin" ] || [ ! -x "$worker_bin" ]; then
  die "no executable worker at '$worker_bin'"
fi
# Everything below reads this copy: cargo replaces the binary in place when it rebuilds.
cp "$worker_bin" "$work/omoi-worker"
given_bin=$worker_bin
worker_bin="$work/omoi-worker"
if command -v readelf >/dev/null 2>&1 && readelf -l "$worker_bin" | grep -q "program interpreter"; then
  die "$given_bin is dynamically linked; the images need the static build (scripts/build-worker.sh)"
fi
version=$("$worker_bin" --version | awk '{ print $2 }')
[ -n "$version" ] || die "$given_bin --version printed no version"
worker_sha=$(file_sha "$worker_bin")
log "worker $version, $(($(stat -c %s "$worker_bin") / 1024)) KiB, sha256 ${worker_sha:0:12}"

# --- the Debian base ---------------------------------------------------------------------------
base_dir=images/sandbox-base
base_changes=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV LANG=C.UTF-8'
  --change 'CMD ["/bin/bash"]'
)
base_key=$(
  {
    printf 'suite=%s\nmirror=%s\nsecurity_mirror=%s\n' "$suite" "$mirror" "$security_mirror"
    printf 'packages=%s\n' "$(file_sha "$base_dir/packages")"
    printf 'rootfs.sh=%s\n' "$(file_sha "$base_dir/rootfs.sh")"
    printf 'import=%s\n' "${base_changes[*]}"
  } | sha
)
base_ref="omoi-sandbox-base:${base_key:0:12}"
if [ "$refresh_base" -eq 0 ] && [ "$(image_key "$base_ref")" = "$base_key" ]; then
  log "reused  $base_ref (Debian $suite base)"
else
  log "building $base_ref (Debian $suite base; debootstrap takes a few minutes)"
  step=$SECONDS
  as_root "$base_dir/rootfs.sh" "$suite" "$mirror" "$security_mirror" "$base_dir/packages" \
    "$work/rootfs.tar" "$deb_cache"
  docker import "${base_changes[@]}" \
    --change "LABEL org.omoi.content-key=$base_key" \
    --change "LABEL org.opencontainers.image.title=omoi-sandbox-base" \
    --message "debootstrap --variant=minbase $suite" \
    "$work/rootfs.tar" "$base_ref" >/dev/null
  rm -f "$work/rootfs.tar"
  log "built   $base_ref in $((SECONDS - step)) s"
fi
base_id=$(docker image inspect -f '{{.Id}}' "$base_ref")

# --- the final images --------------------------------------------------------------------------
# build_final NAME KEY DOCKERFILE FILE... [-- BUILD-ARG...]: builds NAME:<key> from a context that
# holds the Dockerfile and the listed files, unless an image with that key exists; then points
# NAME:latest at it and prints both names on stdout.
build_final() {
  local name=$1 key=$2 dockerfile=$3
  shift 3
  local ref="$name:${key:0:12}"
  if [ "$(image_key "$ref")" = "$key" ]; then
    log "reused  $ref"
  else
    local context="$work/context-$name" step=$SECONDS
    mkdir -p "$context"
    cp "$dockerfile" "$context/Dockerfile"
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
      cp "$1" "$context/"
      shift
    done
    if [ "$#" -gt 0 ]; then shift; fi
    local build_args=()
    local arg
    for arg in "$@"; do build_args+=(--build-arg "$arg"); done
    log "building $ref"
    docker_build "${build_args[@]}" \
      --label "org.omoi.content-key=$key" \
      --label "org.opencontainers.image.title=$name" \
      --label "org.opencontainers.image.version=$version" \
      -t "$ref" "$context"
    log "built   $ref in $((SECONDS - step)) s"
  fi
  docker tag "$ref" "$name:latest"
  echo "$name:latest"
  echo "$ref"
}

cp "$ca_bundle" "$work/ca-certificates.crt"

worker_key=$(
  printf 'worker=%s\ndockerfile=%s\nca=%s\n' "$worker_sha" \
    "$(file_sha images/worker/Dockerfile)" "$(file_sha "$ca_bundle")" | sha
)
build_final omoi-worker "$worker_key" images/worker/Dockerfile \
  "$work/omoi-worker" "$work/ca-certificates.crt"

sandbox_key=$(
  printf 'worker=%s\ndockerfile=%s\nbase=%s\n' "$worker_sha" \
    "$(file_sha images/sandbox/Dockerfile)" "$base_id" | sha
)
build_final omoi-sandbox "$sandbox_key" images/sandbox/Dockerfile \
  "$work/omoi-worker" -- "BASE=$base_ref"

# --- the sandbox with the agent CLIs -----------------------------------------------------------
summary=("$base_ref" omoi-worker:latest omoi-sandbox:latest)
if [ "$with_agents" -eq 1 ]; then
  fetch_args=()
  [ -z "$agents_dir" ] || fetch_args=(--dir "$agents_dir")
  clis=$(scripts/fetch-agent-clis.sh "${fetch_args[@]}") || die "scripts/fetch-agent-clis.sh failed"
  claude_bin=$(sed -n 1p <<<"$clis")
  codex_bin=$(sed -n 2p <<<"$clis")
  [ -x "$claude_bin" ] && [ -x "$codex_bin" ] || die "fetch-agent-clis.sh printed no usable CLIs"
  # The context: claude/ holds the Claude Code binary, codex/ the Codex wheel's layout (its
  # bin/, and codex-resources/ and codex-path/ beside it). Hard links where the filesystem
  # allows, so the 750 MB are not copied twice.
  context="$work/context-omoi-sandbox-agents"
  mkdir -p "$context/claude"
  cp -l "$claude_bin" "$context/claude/claude" 2>/dev/null || cp "$claude_bin" "$context/claude/claude"
  codex_root=$(dirname "$(dirname "$codex_bin")")
  cp -al "$codex_root" "$context/codex" 2>/dev/null || cp -a "$codex_root" "$context/codex"
  cp images/sandbox-agents/Dockerfile "$context/Dockerfile"
  sandbox_ref="omoi-sandbox:${sandbox_key:0:12}"
  agents_key=$(
    {
      printf 'sandbox=%s\ndockerfile=%s\n' "$(docker image inspect -f '{{.Id}}' "$sandbox_ref")" \
        "$(file_sha images/sandbox-agents/Dockerfile)"
      (cd "$context" && find claude codex -type f | LC_ALL=C sort | xargs sha256sum)
    } | sha
  )
  agents_ref="omoi-sandbox-agents:${agents_key:0:12}"
  if [ "$(image_key "$agents_ref")" = "$agents_key" ]; then
    log "reused  $agents_ref"
  else
    log "building $agents_ref ($(du -sm "$context" | cut -f1) MiB of CLIs)"
    step=$SECONDS
    docker_build --build-arg "BASE=$sandbox_ref" \
      --label "org.omoi.content-key=$agents_key" \
      --label "org.opencontainers.image.title=omoi-sandbox-agents" \
      --label "org.opencontainers.image.version=$version" \
      -t "$agents_ref" "$context"
    log "built   $agents_ref in $((SECONDS - step)) s"
  fi
  rm -rf "$context"
  docker tag "$agents_ref" omoi-sandbox-agents:latest
  echo omoi-sandbox-agents:latest
  echo "$agents_ref"
  summary+=(omoi-sandbox-agents:latest)
fi

# --- the coordinator ---------------------------------------------------------------------------
if [ "$with_coordinator" -eq 1 ]; then
  if [ -z "$coordinator_bin" ]; then
    log "building the static coordinator (scripts/build-static.sh coordinator)"
    coordinator_bin=$(scripts/build-static.sh coordinator | tail -n 1)
  fi
  if [ ! -f "$coordinator_bin" ] || [ ! -x "$coordinator_bin" ]; then
    die "no executable coordinator at '$coordinator_bin'"
  fi
  cp "$coordinator_bin" "$work/omoi"
  if command -v readelf >/dev/null 2>&1 && readelf -l "$work/omoi" | grep -q "program interpreter"; then
    die "$coordinator_bin is dynamically linked; the image needs the static build (scripts/build-static.sh coordinator)"
  fi
  "$work/omoi" --version >/dev/null || die "$coordinator_bin --version failed"
  # The root filesystem beside the binary: who root and omoi are, omoi's /data, a /tmp. Fixed
  # owners, modes and times, so the tarball (and the image's key) only change with its contents.
  rootfs="$work/rootfs"
  mkdir -p "$rootfs/etc" "$rootfs/data" "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nomoi:x:1000:1000:omoi:/data:/sbin/nologin\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nomoi:x:1000:\n' >"$rootfs/etc/group"
  chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"
  chmod 0755 "$rootfs/etc" "$rootfs/data"
  chmod 1777 "$rootfs/tmp"
  tar_fixed=(--sort=name --mtime=@0 --numeric-owner --format=gnu -C "$rootfs")
  tar -cf "$work/rootfs.tar" "${tar_fixed[@]}" --owner=0 --group=0 etc tmp
  tar -rf "$work/rootfs.tar" "${tar_fixed[@]}" --owner=1000 --group=1000 data
  coordinator_key=$(
    printf 'coordinator=%s\ndockerfile=%s\nca=%s\nrootfs=%s\n' "$(file_sha "$work/omoi")" \
      "$(file_sha images/coordinator/Dockerfile)" "$(file_sha "$ca_bundle")" \
      "$(file_sha "$work/rootfs.tar")" | sha
  )
  build_final omoi "$coordinator_key" images/coordinator/Dockerfile \
    "$work/omoi" "$work/ca-certificates.crt" "$work/rootfs.tar"
  summary+=(omoi:latest)
fi

# --- summary -----------------------------------------------------------------------------------
for ref in "${summary[@]}"; do
  bytes=$(docker image inspect -f '{{.Size}}' "$ref")
  log "$(awk -v r="$ref" -v b="$bytes" 'BEGIN { printf "%-32s %7.1f MiB", r, b / 1048576 }')"
done
log "done in $((SECONDS - started)) s"

#!/usr/bin/env bash
# Build one peer program (tests/peers/<name>/: our Go source importing a peer's published module) for the
# parity and oracle tests, or "all" of them plus kube-apiserver/etcd (what the test session starts in the
# background).
#
# Binaries go to $GRAYLANE_CACHE/bin/<name>-<hash of the sources>, so a source change rebuilds and an existing
# build is reused at once. Every Go compile holds $GRAYLANE_CACHE/build.lock (one build at a time on a small
# machine; tests that need a binary wait on it), and all builds share Go's module and build caches.
#
# stdout: the binary's path; build chatter on stderr. `build.sh missing` builds nothing and prints what
# `build.sh all` would build, one a line (the test session says so before it starts the background build).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
CACHE="${GRAYLANE_CACHE:-$HOME/.cache/graylane}"
BIN="$CACHE/bin"
log() { echo "[build $(date +%T)] $*" >&2; }
peers() { for name in kruise argo istio $(ls "$here"); do echo "$name"; done | awk '!seen[$0]++'; }
binary() {  # the path peer $1 is built to: its name and a hash of its sources
  local hash
  hash="$(cd "$here/$1" && cat go.mod go.sum $(find . -name '*.go' | LC_ALL=C sort) 2>/dev/null | sha256sum | cut -c1-12)"
  echo "$BIN/$1-$hash"
}

if [[ "${1:-}" == "missing" ]]; then
  bash "$here/../e2e/build-apiserver.sh" --missing
  for name in $(peers); do
    [[ -f "$here/$name/go.mod" && ! -x "$(binary "$name")" ]] && echo "peer $name"
  done
  exit 0
fi

if [[ "${1:-}" == "all" ]]; then
  # In the order the tests need them (e2e, parity, oracle: the largest, Istio, last), then any other peer; a
  # failure is reported and left to the test that needs it.
  bash "$here/../e2e/build-apiserver.sh" >/dev/null || log "kube-apiserver/etcd build failed"
  for name in $(peers); do
    [[ -f "$here/$name/go.mod" ]] || continue
    bash "$0" "$name" >/dev/null || log "$name build failed"
  done
  exit 0
fi

name="${1:?usage: build.sh <peer name>|all}"
src="$here/$name"
[[ -f "$src/go.mod" ]] || { log "no Go module in $src"; exit 2; }
out="$(binary "$name")"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$BIN"
exec 9>"$CACHE/build.lock"
if ! flock -n 9; then log "waiting for another Go build to finish (first builds take minutes)"; flock 9; fi
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
start=$SECONDS
log "building peer '$name' (the first, cold build downloads modules and takes minutes)"
work="$CACHE/src/$name"
rm -rf "$work" && mkdir -p "$work" && cp -r "$src"/. "$work"/  # go may rewrite go.sum: never in the repo
(cd "$work" && go build -trimpath -ldflags "-s -w" -o "$out.tmp" .) >&2
mv "$out.tmp" "$out"
log "peer '$name' built in $((SECONDS - start))s"
echo "$out"

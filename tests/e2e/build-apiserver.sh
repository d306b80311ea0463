#!/usr/bin/env bash
# Build kube-apiserver and etcd from their Go modules (CGO off) for the e2e tests.
#
# Why: a real API server (admission, RBAC, structural pruning, watches) without docker/kind.
# Binaries go to $GRAYLANE_CACHE/bin with the version in the file name, so a version bump
# rebuilds and an existing build is reused in milliseconds. The throwaway wrapper Go modules
# live in the cache dir; nothing here touches the repository.
#
# stdout: two lines "KUBE_APISERVER=<path>" and "ETCD=<path>" on success; build chatter on stderr.
# With --missing: builds nothing, prints what a run would build (one "<name> <version>" a line).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.10}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${GRAYLANE_CACHE:-$HOME/.cache/graylane}"
BIN="$CACHE/bin"
APISERVER="$BIN/kube-apiserver-$K8S_VERSION"
ETCD="$BIN/etcd-$ETCD_VERSION"

report() { echo "KUBE_APISERVER=$APISERVER"; echo "ETCD=$ETCD"; }
log() { echo "[build-apiserver $(date +%T)] $*" >&2; }

if [[ "${1:-}" == "--missing" ]]; then
  [[ -x "$APISERVER" ]] || echo "kube-apiserver $K8S_VERSION"
  [[ -x "$ETCD" ]] || echo "etcd $ETCD_VERSION"
  exit 0
fi
if [[ -x "$APISERVER" && -x "$ETCD" ]]; then report; exit 0; fi

mkdir -p "$BIN"
exec 9>"$CACHE/build.lock"
flock 9                                        # one build at a time (parallel test sessions)
if [[ -x "$APISERVER" && -x "$ETCD" ]]; then report; exit 0; fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
BUILD_FLAGS=(-trimpath)

build_etcd() {
  local dir="$CACHE/src/etcd-$ETCD_VERSION"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  # etcd's root module uses replace directives, so `go install` of it fails; wrap etcdmain instead.
  cat > main.go <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  go mod init graylane.local/etcdbuild >&2 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  go mod tidy >&2
  go build "${BUILD_FLAGS[@]}" -ldflags "-s -w" -o "$ETCD.tmp" . >&2
  mv "$ETCD.tmp" "$ETCD"
}

build_apiserver() {
  local dir="$CACHE/src/kubernetes-$K8S_VERSION" staging="v0.${K8S_VERSION#v1.}"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  local info gomod
  info="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" || true)"
  gomod="$(sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p' <<<"$info")"
  [[ -f "$gomod" ]] || { log "cannot download k8s.io/kubernetes@$K8S_VERSION: $info"; return 1; }
  # Every staging module (k8s.io/X => ./staging/src/k8s.io/X) is published as k8s.io/X v0.<minor>.<patch>.
  local mods
  mods="$(sed -n 's#^\s*\(k8s.io/[^ ]*\) => \./staging/src/k8s.io/.*#\1#p' "$gomod")"
  [[ -n "$mods" ]] || { log "no staging replaces found in $gomod"; return 1; }
  {
    echo "module graylane.local/kubebuild"
    echo
    grep -E '^(go|godebug) ' "$gomod"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $mods; do echo "	$m => $m $staging"; done
    echo ")"
  } > go.mod
  log "wrapper go.mod with $(wc -w <<<"$mods") staging replaces (-> $staging)"
  local v="k8s.io/component-base/version" minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  go build "${BUILD_FLAGS[@]}" -ldflags "$ldflags" -o "$APISERVER.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
  mv "$APISERVER.tmp" "$APISERVER"
}

start=$SECONDS
if [[ ! -x "$ETCD" ]]; then log "building etcd $ETCD_VERSION from its Go module (a first, cold build takes minutes)"; (build_etcd); fi
if [[ ! -x "$APISERVER" ]]; then log "building kube-apiserver $K8S_VERSION from its Go module (a first, cold build takes about 5 minutes on 2 cores)"; (build_apiserver); fi
log "done in $((SECONDS - start))s: $(du -h "$APISERVER" "$ETCD" | tr '\n\t' '  ')"
report

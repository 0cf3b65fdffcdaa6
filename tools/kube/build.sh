#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from the k8s.io/kubernetes module pinned in
# this folder's go.mod, once per version, into a cache folder, and prints that folder's path on
# stdout (everything else goes to stderr). A second call finds the binaries and returns at once.
#
#   STRAIT_KUBE_BIN   use this folder instead of the cache (it is built there if empty)
#   XDG_CACHE_HOME    the cache root (default ~/.cache): binaries go to strait/kube/VERSION/
#
# The integration tests call it through internal/testenv/kubeenv; CI calls it before the tests so
# that its cold build (minutes on two cores) is paid once, outside any test's timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '($1 == "k8s.io/kubernetes" && $2 ~ /^v/) { print $2 } ($1 == "require" && $2 == "k8s.io/kubernetes") { print $3 }' "$here/go.mod")
if [ -z "$version" ]; then
	echo "tools/kube: no k8s.io/kubernetes version in $here/go.mod" >&2
	exit 1
fi
out="${STRAIT_KUBE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/strait/kube/$version}"
bins=(kube-apiserver kube-controller-manager)

built() {
	local b
	for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if built; then
	echo "$out"
	exit 0
fi
mkdir -p "$out"
# Parallel test packages may ask at once: one builds, the others wait for it.
exec 9>"$out/.lock"
flock 9
if ! built; then
	tmp=$(mktemp -d "$out/.build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	echo "tools/kube: building ${bins[*]} $version (once; several minutes on a cold cache)" >&2
	start=$(date +%s)
	pkgs=()
	for b in "${bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	(cd "$here" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath -ldflags='-s -w' -o "$tmp/" "${pkgs[@]}")
	for b in "${bins[@]}"; do mv "$tmp/$b" "$out/$b"; done
	echo "tools/kube: built in $(($(date +%s) - start))s into $out" >&2
fi
echo "$out"

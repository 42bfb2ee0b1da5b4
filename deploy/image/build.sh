#!/bin/sh
# Builds the Coalesce image from the repository's Dockerfile with whichever
# builder is installed: buildah, else docker, else podman.
#
#   deploy/image/build.sh IMAGE VERSION COMMIT      (make image calls it)
#
# With docker or podman the build stage's base is the Dockerfile's default
# (the official Go image), pulled from its registry, unless GO_IMAGE is set.
#
# With buildah and no GO_IMAGE, the build needs no image registry: the
# base is assembled from the local Go installation (GOROOT) and the host's
# CA certificates, as localhost/coalesce-go:<go version>, once:
#
#   c=$(buildah from scratch)
#   buildah copy $c "$(go env GOROOT)" /usr/local/go
#   buildah copy $c /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
#   buildah config --env PATH=/usr/local/go/bin $c
#   buildah commit $c localhost/coalesce-go:<go version>
#
# That base has no shell, which is why every RUN in the Dockerfile is in
# exec form. The final stage is FROM scratch, so nothing else is pulled.
# buildah runs the build with --isolation chroot (no daemon, no user
# namespaces needed; as root) and mounts the host's Go module and build
# caches into the build stage, as BuildKit cache mounts would, so a
# rebuild is quick and, with a warm module cache, offline.
set -eu
image=${1:?usage: build.sh IMAGE VERSION COMMIT}
version=${2:-dev}
commit=${3:-unknown}
cd "$(dirname "$0")/../.."
GO=${GO:-go}

if command -v buildah >/dev/null 2>&1; then
  base=${GO_IMAGE:-}
  if [ -z "$base" ]; then
    gover=$($GO env GOVERSION)
    base=localhost/coalesce-go:${gover#go}
    if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
      echo "assembling $base from $($GO env GOROOT)"
      c=$(buildah from scratch)
      trap 'buildah rm "$c" >/dev/null 2>&1 || true' EXIT
      buildah copy --quiet "$c" "$($GO env GOROOT)" /usr/local/go
      buildah copy --quiet "$c" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
      buildah config --env PATH=/usr/local/go/bin "$c"
      buildah commit --quiet "$c" "$base" >/dev/null
      buildah rm "$c" >/dev/null
      trap - EXIT
    fi
  fi
  modcache=$($GO env GOMODCACHE)
  gocache=$($GO env GOCACHE)
  mkdir -p "$modcache" "$gocache"
  exec buildah bud --isolation chroot --layers=false \
    --build-arg GO_IMAGE="$base" --build-arg VERSION="$version" --build-arg COMMIT="$commit" \
    --build-arg GOPROXY="$($GO env GOPROXY)" \
    --volume "$modcache:/go/pkg/mod" --volume "$gocache:/go/cache" \
    -t "$image" -f Dockerfile .
fi

for b in docker podman; do
  if command -v $b >/dev/null 2>&1; then
    set -- --build-arg VERSION="$version" --build-arg COMMIT="$commit"
    if [ -n "${GO_IMAGE:-}" ]; then
      set -- "$@" --build-arg GO_IMAGE="$GO_IMAGE"
    fi
    exec $b build "$@" -t "$image" -f Dockerfile .
  fi
done
echo "build.sh: no image builder found; install buildah (apt-get install buildah), docker or podman" >&2
exit 1

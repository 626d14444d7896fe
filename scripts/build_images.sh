#!/usr/bin/env bash
# `make images`: builds the project's three container images with podman (Debian's podman + runc,
# scripts/install_containers.sh), tagged for local use and under their published names:
#
#   localhost/faceparse-train:<tag>   ghcr.io/faceparse/faceparse:<version>        infra/docker/Dockerfile.train (CPU torch)
#   localhost/faceparse-serve:<tag>   ghcr.io/faceparse/faceparse-serve:<version>  infra/docker/Dockerfile.serve
#   localhost/faceparse-mlflow:<tag>  ghcr.io/faceparse/mlflow:<mlflow version>    infra/docker/Dockerfile.mlflow
#
# <tag> = $FACEPARSE_IMAGE_TAG, else the package version (pyproject.toml). No registry for base images is
# reachable here, so the base is a local Debian 12 image made once with debootstrap from Debian's mirror
# (localhost/faceparse-base:bookworm; kept, skipped when present) and passed as --build-arg BASE (CUDA_BASE +
# TORCH_CUDA=cpu for the train image). pip's CA bundle ($PIP_CERT / pip config) and the local wheel directory
# ($PIP_FIND_LINKS: the lock's CPU torch wheel) are mounted for the build's RUN steps only (--volume), never
# copied into an image. Every podman call runs with CONTAINERS_CONF=infra/containers.conf (runc, no ulimits).
#
# Usage: scripts/build_images.sh [train] [serve] [mlflow]     (none: all three)
#        scripts/build_images.sh base                         (only the base image)
#        scripts/build_images.sh check                        (`make images-check`: run each built image)
# Writes runs/images.env (FACEPARSE_IMAGE=... for the kfp compile: `set -a; . runs/images.env; set +a`)
# and runs/images.tsv (image, size, build seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export CONTAINERS_CONF=${CONTAINERS_CONF:-$REPO/infra/containers.conf}
BASE_IMAGE=${FACEPARSE_BASE_IMAGE:-localhost/faceparse-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)
TAG=${FACEPARSE_IMAGE_TAG:-$VERSION}
MLFLOW_VERSION=$(sed -n 's/^mlflow==//p' requirements.lock)
mkdir -p runs

bash scripts/install_containers.sh

log() { echo "build_images: $*" >&2; }

make_base() {
  if podman image exists "$BASE_IMAGE"; then
    log "base $BASE_IMAGE present (podman rmi it to remake)"
    return
  fi
  log "making the base $BASE_IMAGE with debootstrap (once, ~1 min)"
  local t0 rootfs
  t0=$(date +%s)
  rootfs=$(mktemp -d /var/tmp/faceparse-base.XXXXXX)
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: ${DEBIAN_MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR}-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # like Docker's debian images: no apt caches, no recommends
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90faceparse-norecommends"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/* "$rootfs"/tmp/*
  tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -C "$rootfs" -c . \
    | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --quiet - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "base $BASE_IMAGE made in $(( $(date +%s) - t0 )) s, $(size_mb "$BASE_IMAGE") MB"
}

size_mb() { podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%d", $1 / 1e6}'; }

# build-time only mounts: pip's CA bundle and the local wheel directory (the Dockerfiles look for them)
mounts=()
ca=${PIP_CERT:-$(pip config get global.cert 2>/dev/null || true)}
if [ -n "$ca" ] && [ -f "$ca" ]; then mounts+=(--volume "$ca:/run/host-ca.crt:ro"); fi
wheels=${PIP_FIND_LINKS:-$(pip config get global.find-links 2>/dev/null || true)}
if [ -n "$wheels" ] && [ -d "$wheels" ]; then mounts+=(--volume "$wheels:/run/wheels:ro"); fi

build() {  # build NAME: Dockerfile.NAME -> localhost/faceparse-NAME:TAG (+ its published name)
  local name=$1 image="localhost/faceparse-$1:$TAG" alias args=(--build-arg "BASE=$BASE_IMAGE")
  case $name in
    train)  alias="ghcr.io/faceparse/faceparse:$VERSION"
            args=(--build-arg "CUDA_BASE=$BASE_IMAGE" --build-arg TORCH_CUDA=cpu) ;;
    serve)  alias="ghcr.io/faceparse/faceparse-serve:$VERSION" ;;
    mlflow) alias="ghcr.io/faceparse/mlflow:$MLFLOW_VERSION" ;;
    *) log "unknown image '$name' (train, serve, mlflow, base)"; exit 2 ;;
  esac
  log "building $image from infra/docker/Dockerfile.$name"
  local t0 secs
  t0=$(date +%s)
  # --format docker keeps HEALTHCHECK; --layers (podman's default) caches every step
  podman build --format docker --layers "${args[@]}" "${mounts[@]}" \
    --ignorefile infra/docker/images.dockerignore \
    -f "infra/docker/Dockerfile.$name" -t "$image" -t "$alias" . >&2
  secs=$(( $(date +%s) - t0 ))
  printf '%s\t%s\t%s\t%s\n' "$image" "$(size_mb "$image")" "$secs" "$alias" >>runs/images.tsv.new
  log "$image: $(size_mb "$image") MB, built in ${secs} s (also tagged $alias)"
}

check() {  # run each built image offline (--network none): what it is for works in it
  local img=localhost/faceparse-train:$TAG run=(podman run --rm --network none --no-healthcheck)
  log "check $img"
  "${run[@]}" "$img" sh -c 'id -un; python -c "import faceparse, faceparse.launch.dispatch, kfp, torch, cv2; \
print(\"faceparse\", faceparse.__version__, \"torch\", torch.__version__)"; faceparse --help >/dev/null && echo "faceparse CLI ok"'
  img=localhost/faceparse-serve:$TAG
  log "check $img"
  "${run[@]}" "$img" sh -c 'id -un; python -c "import faceparse, torch; print(\"faceparse\", faceparse.__version__, \"torch\", torch.__version__)"; \
torchserve --version; java -version 2>&1 | head -1'
  img=localhost/faceparse-mlflow:$TAG
  log "check $img"
  "${run[@]}" --entrypoint sh "$img" -c 'id -un; mlflow --version; python -c "import psycopg2, boto3; print(\"psycopg2\", psycopg2.__version__.split()[0], \"boto3\", boto3.__version__)"'
  log "all three images run"
}

targets=("$@")
if [ "${targets[*]}" = check ]; then check; exit 0; fi
[ ${#targets[@]} -gt 0 ] || targets=(train serve mlflow)
make_base
[ "${targets[*]}" != base ] || exit 0
printf 'image\tsize_mb\tbuild_s\talso_tagged\n' >runs/images.tsv.new
for name in "${targets[@]}"; do build "$name"; done
mv runs/images.tsv.new runs/images.tsv
cat >runs/images.env <<ENVFILE
# written by scripts/build_images.sh; for the kfp compile / local runs: set -a; . runs/images.env; set +a
FACEPARSE_IMAGE=localhost/faceparse-train:$TAG
FACEPARSE_SERVE_IMAGE=localhost/faceparse-serve:$TAG
FACEPARSE_MLFLOW_IMAGE=localhost/faceparse-mlflow:$TAG
ENVFILE
echo
column -t -s $'\t' runs/images.tsv
echo "FACEPARSE_IMAGE=localhost/faceparse-train:$TAG   (runs/images.env)"

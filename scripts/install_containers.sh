#!/usr/bin/env bash
# The container engine `make images` uses (scripts/build_images.sh): Debian's podman + runc, and debootstrap
# for the locally made Debian 12 base image (no registry for base images is reachable here). Idempotent: does
# nothing when all three are there. Needs root (or sudo) to install. crun, podman's default runtime, fails on
# hybrid cgroups; the project's infra/containers.conf (CONTAINERS_CONF) selects runc instead.
set -euo pipefail
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
"$(dirname "$0")/apt_install.sh" install_containers podman runc debootstrap uidmap slirp4netns fuse-overlayfs \
  containernetworking-plugins iptables
echo "install_containers: $(podman --version)" >&2

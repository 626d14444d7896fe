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
sudo=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null || { echo "install_containers: ${missing[*]} missing and this is not root: install Debian's podman runc debootstrap" >&2; exit 1; }
  sudo="sudo -n"
fi
echo "install_containers: installing Debian's podman runc debootstrap (once)" >&2
t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends podman runc debootstrap uidmap slirp4netns fuse-overlayfs \
  containernetworking-plugins iptables >/dev/null
echo "install_containers: $(podman --version) installed in $(( $(date +%s) - t0 )) s" >&2

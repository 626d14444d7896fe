#!/usr/bin/env bash
# Installs Debian packages once, for the project's install scripts (install_browser.sh, install_containers.sh):
#   scripts/apt_install.sh NAME PACKAGE...
# as root, or through `sudo -n`; NAME prefixes every line it prints. Exit 1 naming the packages when neither works.
set -euo pipefail
name=$1; shift
sudo=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null || { echo "$name: this is not root and there is no sudo: install Debian's $*" >&2; exit 1; }
  sudo="sudo -n"
fi
echo "$name: installing Debian's $* (once)" >&2
t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
echo "$name: installed in $(( $(date +%s) - t0 )) s" >&2

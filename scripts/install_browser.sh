#!/usr/bin/env bash
# The headless browser the page tests drive (tests/integration/test_ui_page.py): Debian's Chromium, driven by
# Playwright's Python client pointed at /usr/bin/chromium (Playwright's own browser download does not work
# offline). Idempotent: does nothing when the browser is already there. Needs root (or sudo) to install.
set -euo pipefail
browser=${FACEPARSE_CHROMIUM:-/usr/bin/chromium}
if [ -x "$browser" ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null || { echo "install_browser: $browser is missing and this is not root: install Debian's chromium package" >&2; exit 1; }
  sudo="sudo -n"
fi
echo "install_browser: installing Debian's chromium (once)" >&2
t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "install_browser: $("$browser" --version 2>/dev/null) installed in $(( $(date +%s) - t0 )) s" >&2

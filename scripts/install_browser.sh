#!/usr/bin/env bash
# The headless browser the page tests drive (tests/integration/test_ui_page.py): Debian's Chromium, driven by
# Playwright's Python client pointed at /usr/bin/chromium (Playwright's own browser download does not work
# offline). Idempotent: does nothing when the browser is already there. Needs root (or sudo) to install.
set -euo pipefail
browser=${FACEPARSE_CHROMIUM:-/usr/bin/chromium}
if [ -x "$browser" ]; then
  exit 0
fi
"$(dirname "$0")/apt_install.sh" install_browser chromium fonts-dejavu-core
echo "install_browser: $("$browser" --version 2>/dev/null)" >&2

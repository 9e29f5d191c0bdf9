#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/integration/test_report_browser.py).
#
#   scripts/ci-chromium.sh     # prints the path of a chromium binary
#
# Uses Debian's `chromium` package, installed with apt-get when missing and we are
# root (no browser is downloaded at test time). Progress goes to stderr; only the
# path goes to stdout. Exits 1 when there is no browser and none can be installed.
set -euo pipefail

log() { echo "ci-chromium: $*" >&2; }

find_browser() {
  local b
  for b in "${SHOESTRING_CHROMIUM:-}" chromium chromium-browser google-chrome; do
    [ -n "$b" ] && command -v "$b" >/dev/null 2>&1 && { command -v "$b"; return 0; }
  done
  return 1
}

if find_browser; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  log "chromium is not installed and I cannot install it (need root and apt-get)"
  exit 1
fi
log "installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends chromium >&2 || \
  { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends chromium >&2; }
find_browser

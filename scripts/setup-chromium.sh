#!/usr/bin/env bash
# For developers: installs Debian's chromium when it is missing. The browser tests (test/report.test.ts,
# test/plots.test.ts) drive it headless through puppeteer-core, which downloads no browser of its own; they fail where
# it is missing and never run this script (tests do not change the machine). CI installs it in .ci/run.
# Exit 0 when chromium is there afterwards; 3 when it cannot be installed here (no apt-get, or not root and no
# password-less sudo).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium is installed: $(command -v chromium)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-chromium: chromium is missing and there is no apt-get (not Debian/Ubuntu); install chromium by hand" >&2
  exit 3
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "setup-chromium: chromium is missing and installing it needs root: run 'apt-get update && apt-get install -y chromium' as root" >&2
    exit 3
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y chromium
command -v chromium

#!/usr/bin/env bash
# Headless Chromium (Debian's package) for the status page test, tests/api/status_page.rs, with a
# font for its screenshots. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi dejavu; then
  echo "chromium present: $(chromium --version 2>/dev/null | head -n 1)"
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  chromium fonts-dejavu-core fontconfig >/dev/null
chromium --version 2>/dev/null | head -n 1

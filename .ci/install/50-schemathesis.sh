#!/usr/bin/env bash
# schemathesis, which fuzzes the running service against its own /openapi.json
# (tests/api/openapi.rs). Pinned so a new release cannot change what CI checks.
set -euo pipefail
VERSION=4.32.5
if command -v schemathesis >/dev/null 2>&1 && schemathesis --version 2>/dev/null | grep -q "$VERSION"; then
  echo "schemathesis $VERSION already installed"
  exit 0
fi
python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION"
command -v schemathesis >/dev/null 2>&1 || { hash -r; command -v schemathesis; }
schemathesis --version

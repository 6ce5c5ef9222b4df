#!/usr/bin/env bash
# nginx, for the deploy orchestrator's tests: they start their own nginx on a loopback port in
# front of the blue and green test applications and switch it with `nginx -s reload`.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  echo "nginx is installed: $( (nginx -v || /usr/sbin/nginx -v) 2>&1)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nginx >/dev/null
# The tests start nginx themselves; a distribution service would only hold port 80.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
echo "installed: $(/usr/sbin/nginx -v 2>&1)"

#!/usr/bin/env bash
# The Prisma suite (tests/prisma, run by `cargo test --test api prisma`): Node from Debian's
# packages, a C++ toolchain for better-sqlite3 when no prebuilt binary fits, and the suite's
# packages from its lockfile (Prisma 6.19 with driver adapters: nothing is downloaded at run time).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cd tests/prisma
# npm ci starts from scratch each time (and better-sqlite3 may compile for minutes): skip it when
# node_modules was installed from this very lockfile.
if [ -f node_modules/.package-lock.json ] && [ -x node_modules/.bin/prisma ] \
  && [ node_modules/.package-lock.json -nt package-lock.json ] \
  && find node_modules -name better_sqlite3.node -print -quit | grep -q .; then
  echo "tests/prisma: node_modules is up to date with package-lock.json"
  exit 0
fi
npm ci --no-audit --no-fund
find node_modules -name better_sqlite3.node -print -quit | grep -q . || {
  echo "FAIL: better-sqlite3 was not built (npm did not run its install script)" >&2
  exit 1
}

#!/usr/bin/env bash
# Deploy a release behind the opsdoctor gate, and keep the record of it.
#
#   OPSDOCTOR_URL=https://opsdoctor.internal OPSDOCTOR_TOKEN=… RELEASE=v1.4.2 ./deploy.sh
#
# Settings (environment):
#   OPSDOCTOR_URL, OPSDOCTOR_TOKEN   the service and its admin token (never pass it as an argument)
#   RELEASE                          the version being deployed; GIT_SHA defaults to it
#   ENVIRONMENT                      default prod
#   DEPLOY_CMD, ROLLBACK_CMD         what ships the release and what undoes it
#   GATE_TIMEOUT, GATE_INTERVAL      how long to wait for a verdict, how often to ask (300s, 5s)
#   GATE_START_PERIOD                after the switch, how long a failure waiting cannot fix is tolerated (30s)
set -euo pipefail

: "${OPSDOCTOR_URL:?set OPSDOCTOR_URL}" "${OPSDOCTOR_TOKEN:?set OPSDOCTOR_TOKEN}" "${RELEASE:?set RELEASE}"
export OPSDOCTOR_URL OPSDOCTOR_TOKEN
ENVIRONMENT="${ENVIRONMENT:-prod}"
DEPLOY_CMD="${DEPLOY_CMD:-./scripts/ship.sh}"
ROLLBACK_CMD="${ROLLBACK_CMD:-./scripts/rollback.sh}"
GATE_TIMEOUT="${GATE_TIMEOUT:-300s}"
GATE_INTERVAL="${GATE_INTERVAL:-5s}"
GATE_START_PERIOD="${GATE_START_PERIOD:-30s}"

deploy_id=$(opsdoctor deploys start --env "$ENVIRONMENT" --version "$RELEASE" \
  --git-sha "${GIT_SHA:-$RELEASE}" --strategy blue-green --started-by "${USER:-ci}" \
  --external-id "ci_run=${CI_RUN_ID:-local}")
echo "deploy $deploy_id of $RELEASE to $ENVIRONMENT started"

# 1. Is the stack healthy enough to deploy onto?
if ! opsdoctor gate --env "$ENVIRONMENT" --release "$RELEASE" \
  --timeout "$GATE_TIMEOUT" --interval "$GATE_INTERVAL"; then
  opsdoctor deploys finish "$deploy_id" --status canceled --reason "pre-deploy gate did not pass"
  exit 1
fi

# 2. Ship it.
if ! bash -c "$DEPLOY_CMD"; then
  opsdoctor deploys finish "$deploy_id" --status failed --reason "deploy command failed"
  exit 1
fi

# 3. Healthy after the switch? Fresh results, two passing verdicts in a row.
if ! opsdoctor gate --env "$ENVIRONMENT" --release "$RELEASE" --max-age 0s \
  --timeout "$GATE_TIMEOUT" --interval "$GATE_INTERVAL" \
  --start-period "$GATE_START_PERIOD" --consecutive-successes 2; then
  bash -c "$ROLLBACK_CMD" || echo "rollback command failed too" >&2
  opsdoctor deploys finish "$deploy_id" --status rolled_back --reason "post-deploy gate did not pass"
  exit 1
fi

opsdoctor deploys finish "$deploy_id" --status succeeded
echo "deploy $deploy_id succeeded"

#!/usr/bin/env bash
# Cluster smoke test of one region, against a real cluster (README "For platform engineers"):
#   pulumi up -> the operator token -> a company's token -> a template job -> SUCCEEDED -> its MLflow run and usage.
#
#   tests/cluster_smoke.sh REGION [TENANT]        e.g. tests/cluster_smoke.sh gyeongnam changwon-precision
#
# Needs: the Pulumi CLI logged in to the stack's backend, kubectl, the project's virtualenv (.venv or $PY) and the
# cloud credentials the stack needs. SKIP_UP=1 skips `pulumi up` (a region already deployed). If MLflow asks for
# credentials, set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD. Nothing it prints is a secret: the operator
# and company tokens stay in shell variables.
set -euo pipefail

REGION=${1:?usage: tests/cluster_smoke.sh REGION [TENANT]}
PY=${PY:-.venv/bin/python}
TESTBED=("$PY" -m embedded.cli)
CP_PORT=${CP_PORT:-18000}
MLFLOW_PORT=${MLFLOW_PORT:-15000}
TIMEOUT=${TIMEOUT:-1800}
WORK=$(mktemp -d)
FORWARDS=()

cleanup() {
  for pid in "${FORWARDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'cluster smoke: FAILED: %s\n' "$*" >&2; exit 1; }

step "1. pulumi up (stack $REGION)"
pulumi stack select "$REGION"
if [[ "${SKIP_UP:-0}" != 1 ]]; then pulumi up --yes --skip-preview; fi

step "2. the operator token and the kubeconfig (secret stack outputs)"
OPERATOR_TOKEN=$(pulumi stack output operator_token --show-secrets)
[[ ${#OPERATOR_TOKEN} -ge 43 ]] || fail "stack output operator_token is missing or short"
pulumi stack output kubeconfig --show-secrets > "$WORK/kubeconfig"
export KUBECONFIG="$WORK/kubeconfig"
TENANT=${2:-$(pulumi stack output tenants --json | "$PY" -c 'import json, sys; print(next(iter(json.load(sys.stdin))))')}
echo "tenant: $TENANT"

step "3. port-forward the control plane and MLflow (ClusterIP services)"
kubectl -n testbed-system rollout status deploy/testbed-control-plane --timeout=600s
kubectl -n testbed-system port-forward svc/testbed-control-plane "$CP_PORT:8000" > "$WORK/cp.log" 2>&1 &
FORWARDS+=($!)
kubectl -n testbed-system port-forward svc/mlflow "$MLFLOW_PORT:5000" > "$WORK/mlflow.log" 2>&1 &
FORWARDS+=($!)
URL="http://127.0.0.1:$CP_PORT"
for _ in $(seq 60); do curl -fsS "$URL/healthz" > "$WORK/health.json" 2>/dev/null && break; sleep 2; done
"$PY" -c 'import json, sys; h = json.load(open(sys.argv[1])); print(h); assert h["backend"] == "kuberay" and h["backend_healthy"], h' \
  "$WORK/health.json" || fail "control plane not healthy at $URL"

step "4. the operator issues the company's token"
TENANT_TOKEN=$("${TESTBED[@]}" tenants token "$TENANT" --rotate --url "$URL" --token "$OPERATOR_TOKEN")
[[ -n "$TENANT_TOKEN" ]] || fail "no tenant token issued"

step "5. the company submits a template job and waits for it"
JOB=$("${TESTBED[@]}" submit --url "$URL" --token "$TENANT_TOKEN" --template smoke --param epochs=2 --name cluster-smoke)
JOB_ID=${JOB%% *}
echo "job: $JOB_ID"
# While it waits, `testbed jobs show` prints Kueue's reason (e.g. "waiting for quota in ClusterQueue ...").
if ! "${TESTBED[@]}" jobs wait "$JOB_ID" --timeout "$TIMEOUT" --url "$URL" --token "$TENANT_TOKEN"; then
  "${TESTBED[@]}" jobs show "$JOB_ID" --url "$URL" --token "$TENANT_TOKEN" || true
  "${TESTBED[@]}" jobs logs "$JOB_ID" --url "$URL" --token "$TENANT_TOKEN" || true
  fail "job $JOB_ID did not succeed"
fi
"${TESTBED[@]}" jobs list --url "$URL" --token "$TENANT_TOKEN"

step "6. its MLflow run, tagged with the job id"
MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT" "$PY" - "$TENANT/cluster-smoke" "$JOB_ID" <<'EOF'
import sys

import mlflow

experiment, job_id = sys.argv[1:]
runs = mlflow.search_runs(experiment_names=[experiment], filter_string=f"tags.`testbed.job_id` = '{job_id}'",
                          output_format="list")
assert runs, f"no MLflow run of job {job_id} in experiment {experiment}"
print(f"MLflow run {runs[0].info.run_id}: {runs[0].info.status}, metrics {sorted(runs[0].data.metrics)}")
assert runs[0].info.status == "FINISHED" and runs[0].data.metrics, runs[0].info
EOF

step "7. usage: the operator sees the company's finished job and its CPU time"
"${TESTBED[@]}" usage --json --tenant "$TENANT" --url "$URL" --token "$OPERATOR_TOKEN" > "$WORK/usage.json"
"$PY" - "$WORK/usage.json" "$TENANT" <<'EOF'
import json
import sys

report, tenant = json.load(open(sys.argv[1])), sys.argv[2]
[usage] = [t for t in report["tenants"] if t["tenant"] == tenant]
print(f"{tenant}: {usage['cpu_seconds']:.0f} CPU-seconds, jobs {usage['jobs']}")
assert usage["cpu_seconds"] > 0 and usage["jobs"].get("SUCCEEDED", 0) >= 1, usage
EOF

printf '\ncluster smoke: PASSED (region %s, tenant %s, job %s)\n' "$REGION" "$TENANT" "$JOB_ID"

"""The control plane's HTTP routes, one module-level ``APIRouter`` per resource.

deps       the shared dependencies: ``Caller``, ``Plane``
health     /healthz
jobs       /v1/jobs (submit, list, get, logs, stop)
tenants    /v1/tenants, token rotation
templates  /v1/templates
mlflow     /v1/mlflow/credentials
usage      /metrics, /v1/usage
storage    /v1/packages, /v1/data, /v1/jobs/{id}/outputs
"""

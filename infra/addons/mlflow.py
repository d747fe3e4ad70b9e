"""MLflow tracking server on PostgreSQL and object storage, reachable only inside the cluster."""

from __future__ import annotations

from typing import Callable

import pulumi
import pulumi_kubernetes as k8s

from infra.addons.workload import WebService, deploy
from infra.naming import MLFLOW, MLFLOW_PORT, PLATFORM_NS, service_url
from infra.storage import MlflowStorage, secret_env
from testbed.config import StackConfig

# Kubernetes expands $(VAR) in args from the container's env: the database URI comes from a Secret.
BACKEND_STORE_ENV, ARTIFACTS_ENV = "MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION"


def allowed_hosts() -> list[str]:
    """Host headers MLflow answers (its DNS-rebinding guard refuses other names): the Service's names, with and
    without the port, and localhost for `kubectl port-forward`."""
    names = [MLFLOW, f"{MLFLOW}.{PLATFORM_NS}", f"{MLFLOW}.{PLATFORM_NS}.svc", f"{MLFLOW}.{PLATFORM_NS}.svc.cluster.local"]
    return [h for name in names for h in (name, f"{name}:{MLFLOW_PORT}")] + ["localhost", "localhost:*",
                                                                           "127.0.0.1", "127.0.0.1:*"]


def server_args(host: str = "0.0.0.0", port: int = MLFLOW_PORT) -> list[str]:
    """The container's command line (the testbed image has the PostgreSQL and S3 drivers MLflow needs here)."""
    return ["mlflow", "server", "--host", host, "--port", str(port),
            "--backend-store-uri", f"$({BACKEND_STORE_ENV})", "--artifacts-destination", f"$({ARTIFACTS_ENV})",
            "--serve-artifacts", "--allowed-hosts", ",".join(allowed_hosts())]


class Mlflow(pulumi.ComponentResource):
    """Tracking server proxying artifacts (``--serve-artifacts``), so tenants never touch the store."""

    def __init__(self, name: str, stack: StackConfig, image: pulumi.Input[str], ns: pulumi.Input[str],
                 storage_factory: Callable[[pulumi.Resource, pulumi.Input[str]], MlflowStorage],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:addon:Mlflow", name, None, opts)
        self.storage = storage = storage_factory(self, ns)
        spec = WebService(
            component=MLFLOW, image=image, port=MLFLOW_PORT, replicas=2, args=server_args(),
            env=[secret_env(BACKEND_STORE_ENV, storage.db_secret, "mlflow-uri"),
                 k8s.core.v1.EnvVarArgs(name=ARTIFACTS_ENV, value=storage.artifacts_destination),
                 *storage.env])
        deploy(name, self, ns, spec, depends_on=storage.ready,
               account_annotations=storage.service_account_annotations or None)
        self.url = service_url(MLFLOW, PLATFORM_NS, MLFLOW_PORT)
        self.register_outputs({"url": self.url})

"""MLflow tracking server on PostgreSQL and object storage, reachable only inside the cluster."""

from __future__ import annotations

from typing import Callable

import pulumi
import pulumi_kubernetes as k8s

from infra.addons.workload import WebService, deploy
from infra.naming import MLFLOW, MLFLOW_PORT, PLATFORM_NS, service_url
from infra.storage import MlflowStorage, secret_env
from testbed.versions import IMAGES
from testbed.config import StackConfig


class Mlflow(pulumi.ComponentResource):
    """Tracking server proxying artifacts (``--serve-artifacts``), so tenants never touch the store."""

    def __init__(self, name: str, stack: StackConfig, ns: pulumi.Input[str],
                 storage_factory: Callable[[pulumi.Resource, pulumi.Input[str]], MlflowStorage],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:addon:Mlflow", name, None, opts)
        self.storage = storage = storage_factory(self, ns)
        spec = WebService(
            component=MLFLOW, image=stack.platform.mlflow_image or IMAGES["mlflow"].ref, port=MLFLOW_PORT,
            replicas=2,
            args=["mlflow", "server", "--host", "0.0.0.0", "--port", str(MLFLOW_PORT),
                  "--backend-store-uri", "$(MLFLOW_BACKEND_STORE_URI)",
                  "--artifacts-destination", "$(MLFLOW_ARTIFACTS_DESTINATION)", "--serve-artifacts"],
            env=[secret_env("MLFLOW_BACKEND_STORE_URI", storage.db_secret, "mlflow-uri"),
                 k8s.core.v1.EnvVarArgs(name="MLFLOW_ARTIFACTS_DESTINATION", value=storage.artifacts_destination),
                 *storage.env])
        deploy(name, self, ns, spec, depends_on=storage.ready,
               account_annotations=storage.service_account_annotations or None)
        self.url = service_url(MLFLOW, PLATFORM_NS, MLFLOW_PORT)
        self.register_outputs({"url": self.url})

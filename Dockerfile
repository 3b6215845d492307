# syntax=docker/dockerfile:1.7
# DocuChat: one image, every target (`docuchat run --target <all|auth|ingest|ingest-worker|chat|
# usage|relay>`, chosen with DOCUCHAT_TARGET or the command). Production dependencies only: the
# `embedded` extra (embedded Postgres, tansu, Traefik, the local LLM) stays out of the image.
#
#   docker build -t docuchat:dev .
#   docker run --rm -e DOCUCHAT_TARGET=auth docuchat:dev

ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# --- builder: resolve from uv.lock into /app/.venv ------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
COPY --from=uv /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# Dependencies first (a layer that only changes with uv.lock), then the workspace itself.
COPY pyproject.toml uv.lock README.md ./
COPY libs/common/pyproject.toml libs/common/pyproject.toml
COPY services/auth/pyproject.toml services/auth/pyproject.toml
COPY services/ingest/pyproject.toml services/ingest/pyproject.toml
COPY services/chat/pyproject.toml services/chat/pyproject.toml
COPY services/usage/pyproject.toml services/usage/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-workspace

COPY libs libs
COPY services services
COPY src src
# Non-editable: the venv holds our packages (migrations included), not links into /src.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- runtime: the venv and nothing else -------------------------------------------------------------
# The same base as the builder: the venv's python is a link to /usr/local/bin/python3.11.
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="docuchat" \
      org.opencontainers.image.description="DocuChat services (one image, many targets)" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 docuchat \
 && useradd --system --uid 10001 --gid docuchat --home-dir /tmp --no-create-home \
            --shell /usr/sbin/nologin docuchat \
 && mkdir -p /data/blobs /data/vectors /data/auth-keys /data/mail \
 && chown -R docuchat:docuchat /data

COPY --from=builder --chown=root:root /app/.venv /app/.venv

# Read-only root filesystem friendly: bytecode was compiled at build time, nothing writes next
# to the code, and everything writable is under /data (volumes) or /tmp (tmpfs / emptyDir).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    TIKTOKEN_CACHE_DIR=/tmp/tiktoken \
    DOCUCHAT_HOST=0.0.0.0 \
    DOCUCHAT_LOG_JSON=true \
    DOCUCHAT_TARGET=all \
    DOCUCHAT_AUTH_PORT=8101 \
    DOCUCHAT_INGEST_PORT=8102 \
    DOCUCHAT_CHAT_PORT=8103 \
    DOCUCHAT_USAGE_PORT=8104 \
    DOCUCHAT_INGEST_WORKER_PORT=8105 \
    DOCUCHAT_RELAY_PORT=8106 \
    DOCUCHAT_INGEST_BLOB_DIR=/data/blobs \
    DOCUCHAT_INGEST_VECTOR_DIR=/data/vectors \
    DOCUCHAT_AUTH_KEYS_DIR=/data/auth-keys \
    DOCUCHAT_AUTH_MAIL_FILE=/data/mail/outbox.jsonl

WORKDIR /tmp
USER 10001:10001
VOLUME ["/data"]
# auth, ingest, chat, usage, ingest-worker, relay (each target listens on its own port)
EXPOSE 8101 8102 8103 8104 8105 8106

# Liveness of the target's /healthz; DOCUCHAT_HEALTHCHECK_URL names its port (default: auth's, which
# `--target all` serves too). Compose and Kubernetes probe each target themselves.
ENV DOCUCHAT_HEALTHCHECK_URL=http://127.0.0.1:8101/healthz
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['DOCUCHAT_HEALTHCHECK_URL'], timeout=2)"]

ENTRYPOINT ["docuchat"]
CMD ["run"]

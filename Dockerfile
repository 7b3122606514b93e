# syntax=docker/dockerfile:1
#
# One image for the five Guestlist services and the local SMTP sink; the
# command picks what runs:
#
#   docker run ... guestlist python -m services.identity        (8001)
#   docker run ... guestlist python -m services.invitations     (8002)
#   docker run ... guestlist python -m services.notifications   (8003)
#   docker run ... guestlist python -m services.audit           (8004)
#   docker run ... guestlist python -m services.projections     (8005)
#
# Configuration comes from the environment at run time (DATABASE_URL,
# KAFKA_BOOTSTRAP, HTTP_PORT, ...); nothing secret is baked in.
# See deploy/README.md.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: resolve the locked dependencies into a self-contained virtualenv ---
FROM ${PYTHON_IMAGE} AS build

# uv uses the base image's interpreter (never one it would download) and
# compiles bytecode here, because the runtime filesystem is read-only.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

RUN pip install uv==0.13.8

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself, installed as a wheel (not editable), so the
# runtime stage needs the virtualenv only and not the source tree.
COPY README.md ./
COPY packages ./packages
COPY schemas ./schemas
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- runtime: the virtualenv on a clean base, run as an unprivileged user ---
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="guestlist" \
      org.opencontainers.image.description="Guestlist services (identity, invitations, notifications, audit, projections)" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric id, so Kubernetes' runAsNonRoot can check it; the mail
# directory is where the SMTP sink keeps its .eml files when compose runs it,
# the audit directory where compose keeps audit's checkpoint signing key.
RUN groupadd --system --gid 10001 guestlist \
 && useradd --system --uid 10001 --gid guestlist --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin guestlist \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/guestlist/mail /var/lib/guestlist/audit

COPY --from=build /app/.venv /app/.venv

# In a container a service listens beyond loopback; HTTP_PORT is set per
# service by compose and by the Deployments (8001-8005). USER names the
# account for yoyo's migration log (getpass.getuser), which would otherwise
# fail under a UID with no passwd entry (clusters that assign random UIDs).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HTTP_HOST=0.0.0.0 \
    USER=guestlist

WORKDIR /app
USER 10001:10001

EXPOSE 8001 8002 8003 8004 8005

# Liveness of whichever service runs, on the HTTP_PORT it was given.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['HTTP_PORT'] + '/healthz', timeout=4)"]

# No default service: running the image without a command says how to pick one.
CMD ["python", "-c", "raise SystemExit('choose a service: python -m services.<identity|invitations|notifications|audit|projections>')"]

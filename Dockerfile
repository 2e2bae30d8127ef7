# modelloop images. Two targets:
#   serve   `modelloop serve`: service + store only (no scikit-learn, no scipy)
#   worker  `modelloop monitor` (default) and `modelloop trainer` / `modelloop train`
# Build:  docker build --target serve  -t modelloop:serve  .
#         docker build --target worker -t modelloop:worker .
# BASE must be a Debian-like image with python3 (>= 3.11) and its venv module
# (python:3.11-slim-bookworm, or the debootstrap image CI builds; see docs/deploy.md).
# Both images run as uid 10001, write only to MODELLOOP_HOME (/var/lib/modelloop, a volume)
# and /tmp, and so run with a read-only root filesystem.
#
# Layers: the dependencies (a virtualenv per image, from pyproject.toml + constraints.txt)
# come first and stay cached while only src/ changes; modelloop itself is the last, small
# layer (/opt/modelloop/app, on the venv's path through a .pth file).
ARG BASE=python:3.11-slim-bookworm

# ---- modelloop itself, installed into /out/app (pure Python, no dependencies) ------------
FROM ${BASE} AS app
# PIP_CERT / PIP_INDEX_URL: optional, for builds behind a TLS-intercepting proxy or a mirror.
ARG PIP_CERT
ARG PIP_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python3 -m venv /tmp/venv \
    && /tmp/venv/bin/pip install --no-cache-dir --no-deps --target /out/app . \
    && rm -rf /out/app/bin

# ---- dependencies: one virtualenv per image -----------------------------------------------
FROM ${BASE} AS deps-serve
ARG PIP_CERT
ARG PIP_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt deploy/docker/make_venv.py ./
RUN python3 make_venv.py serve

FROM ${BASE} AS deps-worker
ARG PIP_CERT
ARG PIP_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt deploy/docker/make_venv.py ./
RUN python3 make_venv.py train monitor

# ---- serve -------------------------------------------------------------------------------
FROM ${BASE} AS serve
ENV PATH=/opt/modelloop/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MODELLOOP_HOME=/var/lib/modelloop \
    MODELLOOP_HOST=0.0.0.0 \
    MODELLOOP_PORT=8000 \
    MODELLOOP_GRPC_PORT=8081
COPY --from=deps-serve /opt/modelloop /opt/modelloop
COPY --from=deps-serve --chown=10001:10001 /out/data /var/lib/modelloop
COPY deploy/docker/healthcheck.py /opt/modelloop/healthcheck.py
WORKDIR /var/lib/modelloop
USER 10001:10001
VOLUME ["/var/lib/modelloop"]
# HTTP, and the Open Inference Protocol over gRPC
EXPOSE 8000 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/modelloop/healthcheck.py"]
ENTRYPOINT ["modelloop"]
CMD ["serve"]
COPY --from=app /out/app /opt/modelloop/app

# ---- worker (monitor by default; `trainer` and `train` as the command) ------------------
FROM ${BASE} AS worker
ENV PATH=/opt/modelloop/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MODELLOOP_HOME=/var/lib/modelloop \
    MODELLOOP_MONITOR_HOST=0.0.0.0 \
    MODELLOOP_MONITOR_PORT=8001
COPY --from=deps-worker /opt/modelloop /opt/modelloop
COPY --from=deps-worker --chown=10001:10001 /out/data /var/lib/modelloop
COPY deploy/docker/healthcheck.py /opt/modelloop/healthcheck.py
WORKDIR /var/lib/modelloop
USER 10001:10001
VOLUME ["/var/lib/modelloop"]
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/modelloop/healthcheck.py"]
ENTRYPOINT ["modelloop"]
CMD ["monitor"]
COPY --from=app /out/app /opt/modelloop/app

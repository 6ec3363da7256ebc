# The arpipe project image: the pipeline, its CLI, and the Prefect and MLflow servers at the versions
# constraints.txt pins. docker-compose.yml runs the Prefect server, the MLflow server and the Prefect
# worker from this one image, so server and client versions always match.
#
# Build args (docker-compose.yml passes them from .env):
#   BASE_IMAGE       any Python 3.11 image with the venv module (default python:3.11-slim from Docker
#                    Hub; docker/build-bases.sh builds arpipe-base/python:3.11-bookworm from Debian's
#                    packages where Docker Hub is unreachable)
#   TORCH_INDEX_URL  an index with torch's CPU wheel (default PyTorch's CPU index); empty: none, then
#                    the CPU wheel must be in docker/wheels/ (see its README)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL   your PyPI mirror, if not PyPI itself
# docker/certs/*.crt: extra CAs for a re-signing HTTPS proxy, trusted while pip runs (build stage only).
ARG BASE_IMAGE=python:3.11-slim

# --- build: the virtual environment at /opt/venv, from wheels only -----------------------------------
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=60 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt

COPY docker/certs/ /usr/local/share/ca-certificates/arpipe-build/
RUN if ls /usr/local/share/ca-certificates/arpipe-build/*.crt >/dev/null 2>&1; then update-ca-certificates; fi \
    && python3 -m venv /opt/venv

WORKDIR /src
# Dependencies first (this layer is reused until pyproject.toml, constraints.txt or the wheels change).
# torch==2.13.0 on PyPI is the CUDA build (several GB); the CPU wheel comes from docker/wheels/ or
# TORCH_INDEX_URL, and the build stops (instead of fetching GBs) when it would come from neither.
# The 'postgres' extra: psycopg 3, MLflow's driver for its PostgreSQL store (Prefect's, asyncpg, comes
# with prefect).
COPY docker/wheels/ /tmp/wheels/
COPY pyproject.toml constraints.txt README.md ./
RUN set -e; \
    if [ -n "$TORCH_INDEX_URL" ]; then \
        /opt/venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=30)" "$TORCH_INDEX_URL" \
        || { echo "error: TORCH_INDEX_URL=$TORCH_INDEX_URL is unreachable; put torch's CPU wheel in docker/wheels/ and set TORCH_INDEX_URL= (empty)" >&2; exit 1; }; \
        torch_index="--extra-index-url $TORCH_INDEX_URL"; \
    elif ! ls /tmp/wheels/torch-*+cpu-*.whl >/dev/null 2>&1; then \
        echo "error: no torch CPU wheel in docker/wheels/ and TORCH_INDEX_URL is empty; see docker/wheels/README.md" >&2; exit 1; \
    fi; \
    mkdir -p arcore tasks flows && touch arcore/__init__.py tasks/__init__.py flows/__init__.py; \
    /opt/venv/bin/pip install --find-links /tmp/wheels ${torch_index:-} -c constraints.txt '.[postgres]'; \
    /opt/venv/bin/pip uninstall -y arpipe; \
    rm -rf build arpipe.egg-info arcore tasks flows; \
    /opt/venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda and 'error: torch ' + torch.__version__ + ' is a CUDA build')"

# The stub packages and setuptools' build/ from the step above are gone: build/lib would otherwise keep
# the empty __init__.py files (newer than the sources' mtimes, so setuptools does not copy over them).
# The check runs outside /src, so it imports what the venv installed, as the arpipe CLI does.
COPY arcore arcore
COPY tasks tasks
COPY flows flows
RUN /opt/venv/bin/pip install --no-deps -c constraints.txt . \
    && cd / && /opt/venv/bin/python -c "import arcore, flows.cli, tasks; print('arpipe', arcore.__version__)"

# --- the image: the base, the venv, the project's files in /app --------------------------------------
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# git: MLflow runs are tagged with the source commit when the work tree is a checkout (the
# Debian-built base has it already; python:3.11-slim does not).
RUN command -v git >/dev/null \
    || { apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*; }

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml constraints.txt README.md prefect.yaml ./
COPY arcore arcore
COPY tasks tasks
COPY flows flows
# /app is the worker's working directory (prefect deploy records it; flow runs start there) and the
# arpipe user owns it: runs write their work dir, Prefect deploy its .prefect/ there. work/ and
# /srv/mlartifacts are volume mount points; Docker copies this ownership into a new named volume.
RUN useradd --create-home --uid 1000 arpipe \
    && mkdir -p /app/work /app/data /srv/mlartifacts \
    && chown -R arpipe:arpipe /app /srv/mlartifacts

# The Prefect server writes its UI bundle (with the served base URL filled in) on start; by default into
# the prefect package in /opt/venv, which the arpipe user cannot write: the UI would answer 404.
RUN mkdir -p /opt/prefect-ui && chown arpipe:arpipe /opt/prefect-ui
ENV PREFECT_SERVER_UI_STATIC_DIRECTORY=/opt/prefect-ui

USER arpipe
CMD ["arpipe", "--help"]

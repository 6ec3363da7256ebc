# The arpipe project image: the pipeline, its CLI, and the Prefect and MLflow servers at the versions
# constraints.txt pins. docker-compose.yml runs the Prefect server, the MLflow server and the Prefect
# worker from this one image, so server and client versions always match.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# git: MLflow runs are tagged with the source commit when the work tree is a checkout
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first (this layer is reused until pyproject.toml or constraints.txt change).
# torch==2.13.0 on PyPI is the CUDA build (several GB); PyTorch's CPU index serves the CPU wheel of the
# same version, so the extra index is named here and nowhere else (a local `pip install` needs none).
# psycopg2-binary: the MLflow server's PostgreSQL driver (Prefect's, asyncpg, comes with prefect).
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p arcore tasks flows && touch arcore/__init__.py tasks/__init__.py flows/__init__.py \
    && pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt . "psycopg2-binary==2.9.13" \
    && pip uninstall -y arpipe

COPY arcore arcore
COPY tasks tasks
COPY flows flows
COPY prefect.yaml ./
RUN pip install --no-deps -c constraints.txt . \
    && useradd --create-home --uid 1000 arpipe \
    && mkdir -p /app/work /app/data /srv/mlartifacts \
    && chown -R arpipe:arpipe /app/work /srv/mlartifacts

USER arpipe
CMD ["arpipe", "--help"]

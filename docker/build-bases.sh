#!/bin/sh
# Build the two base images docker-compose.yml needs from Debian's packages, for machines that cannot
# pull from Docker Hub (air-gapped clusters, registry mirrors only): a Python 3.11 base for the project
# image and a PostgreSQL image with the entrypoint contract of the official postgres image.
#
#   docker/build-bases.sh      # as root or a docker-group user with mmdebstrap installed
#                              # (apt-get install mmdebstrap); reaches only a Debian mirror
#   then in .env (.env.example lists them):
#     BASE_IMAGE=arpipe-base/python:3.11-bookworm
#     POSTGRES_IMAGE=arpipe-base/postgres:15-bookworm
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), SUITE (bookworm), PYTHON_TAG and
# POSTGRES_TAG (the names above), ONLY=python or ONLY=postgres to build one of the two.
#
# Why Debian's own python3: bookworm ships CPython 3.11 (3.11.2), the minor version pyproject.toml
# requires (>=3.11,<3.12) and python:3.11-slim carries, so no interpreter needs building; the wheels
# constraints.txt pins (manylinux 2.17/2.28) run on bookworm's glibc 2.36.
# Why PostgreSQL 15: it is bookworm's postgresql (with pg_trgm in the same package); Prefect 3 and
# MLflow 3 support it. A data directory is tied to its major version: a pgdata volume initialised by
# postgres:16 does not start under this image (docker compose down -v, or pg_dump/restore, to switch).
set -eu

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
PYTHON_TAG=${PYTHON_TAG:-arpipe-base/python:3.11-$SUITE}
POSTGRES_TAG=${POSTGRES_TAG:-arpipe-base/postgres:15-$SUITE}
HERE=$(cd "$(dirname "$0")" && pwd)

for tool in mmdebstrap docker; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers (start dockerd, or join the docker group)" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

# rootfs TAG PACKAGES: a minimal Debian root file system with PACKAGES, imported as image TAG.
# No docs, man pages or translations; apt's lists are dropped (an image that needs more packages runs
# apt-get update first, as on any Debian image).
rootfs() {
    echo "building $1 from Debian $SUITE: $2" >&2
    mmdebstrap --variant=minbase --include="$2" \
        --aptopt='Acquire::Languages "none"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        "$SUITE" "$TMP/rootfs.tar" "$MIRROR"
    docker import --message "arpipe base: Debian $SUITE minbase + $2" \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' "$TMP/rootfs.tar" "$1" >/dev/null
    rm -f "$TMP/rootfs.tar"
}

if [ "${ONLY:-python}" = python ]; then
    # python3-venv: the project image installs into a venv (Debian's python3 is externally managed);
    # git: MLflow tags runs with the source commit when the work tree is a checkout.
    rootfs "$PYTHON_TAG" python3,python3-venv,ca-certificates,git
    echo "built $PYTHON_TAG ($(docker run --rm "$PYTHON_TAG" python3 --version))" >&2
fi

if [ "${ONLY:-postgres}" = postgres ]; then
    rootfs "$POSTGRES_TAG-rootfs" postgresql-15
    # The entrypoint and the settings docker-compose.yml relies on, added on top of the root file system
    # (docker import cannot set STOPSIGNAL).
    docker build --quiet --build-arg "ROOTFS=$POSTGRES_TAG-rootfs" -t "$POSTGRES_TAG" "$HERE/postgres" >/dev/null
    docker rmi "$POSTGRES_TAG-rootfs" >/dev/null
    echo "built $POSTGRES_TAG ($(docker run --rm --entrypoint postgres "$POSTGRES_TAG" --version))" >&2
fi

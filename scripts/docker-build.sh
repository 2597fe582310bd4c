#!/usr/bin/env bash
# Build the training image (deploy/Dockerfile) with BuildKit.
#   scripts/docker-build.sh                 -> ragtune:cpu on python:3.11-slim-bookworm
#   IMAGE=ragtune:ci BASE_IMAGE=ragtune-base:bookworm scripts/docker-build.sh
# A torch wheel found in WHEELS (default: pip's find-links, if any) is linked into wheels/ so the
# image installs it instead of downloading. PIP_CERT (a CA bundle, e.g. behind a TLS-intercepting
# proxy) goes to the build as a secret: no layer keeps it. DOCKER picks the client (default docker).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCKER=${DOCKER:-docker}
VARIANT=${VARIANT:-cpu}
IMAGE=${IMAGE:-ragtune:$VARIANT}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
WHEELS=${WHEELS:-${PIP_FIND_LINKS:-}}

command -v "$DOCKER" >/dev/null 2>&1 || { echo "error: $DOCKER not found; install Docker: https://docs.docker.com/engine/install/" >&2; exit 2; }
"$DOCKER" info >/dev/null 2>&1 || { echo "error: no Docker engine answers ($DOCKER info failed); start it (e.g. dockerd or systemctl start docker)" >&2; exit 2; }

torch_version=$(sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml")
for wheel in "${WHEELS:-/nonexistent}"/torch-"$torch_version"+"$VARIANT"-cp311-*.whl; do
  [ -f "$wheel" ] && [ ! -e "$ROOT/wheels/$(basename "$wheel")" ] && { ln "$wheel" "$ROOT/wheels/" 2>/dev/null || cp "$wheel" "$ROOT/wheels/"; }
done

secret=()
[ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ] && secret=(--secret "id=pip_cert,src=$PIP_CERT")
DOCKER_BUILDKIT=1 "$DOCKER" build -f "$ROOT/deploy/Dockerfile" "${secret[@]}" \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VARIANT=$VARIANT" --build-arg "TORCH_VERSION=$torch_version" \
  -t "$IMAGE" "$ROOT"

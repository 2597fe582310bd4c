#!/usr/bin/env bash
# Train in a container, no Kubernetes: build deploy/Dockerfile, then run `ragtune train` as the
# image's non-root user with your prepared data mounted read-only and ./training_outputs mounted
# for the run (model/, metrics.json, config.yaml, tensorboard/).
#
#   scripts/docker-train.sh PREPARED_DIR [ragtune train flags...]
#   e.g. scripts/docker-train.sh prepared --epochs 1      -> ./training_outputs/runs/docker
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-ragtune:${VARIANT:-cpu}}
OUTPUTS=${OUTPUTS:-$ROOT/training_outputs}

[ $# -ge 1 ] || { echo "usage: $0 PREPARED_DIR [ragtune train flags...]" >&2; exit 2; }
PREPARED=$(cd "$1" 2>/dev/null && pwd) || { echo "error: $1: not a directory; run ragtune prepare first" >&2; exit 2; }
shift
[ -f "$PREPARED/train.parquet" ] || { echo "error: $PREPARED has no train.parquet; run ragtune prepare first" >&2; exit 2; }
command -v docker >/dev/null 2>&1 || { echo "error: docker not found; install it: https://docs.docker.com/engine/install/" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "error: the docker daemon is not reachable; start Docker" >&2; exit 1; }

mkdir -p "$OUTPUTS"
user="$(id -u):$(id -g)"
[ "$(id -u)" = 0 ] && user=1000:1000  # never root inside the container
docker build -f "$ROOT/deploy/Dockerfile" --build-arg "VARIANT=${VARIANT:-cpu}" -t "$IMAGE" "$ROOT"
gpus=()
[ "${VARIANT:-cpu}" = cuda ] && gpus=(--gpus all)
docker run --rm "${gpus[@]}" \
  --user "$user" --read-only --tmpfs /tmp --security-opt no-new-privileges --cap-drop ALL \
  -e RAGTUNE_CACHE=/outputs/.cache \
  -v "$PREPARED:/data:ro" -v "$OUTPUTS:/outputs" \
  "$IMAGE" ragtune train --data /data --output /outputs/runs/docker "$@"
echo "done: $OUTPUTS/runs/docker (tensorboard: ragtune tensorboard $OUTPUTS/runs/docker)"

#!/usr/bin/env bash
# Train in a container, no Kubernetes: `ragtune train` in the training image as uid 1000 on a
# read-only root filesystem, no network, no capabilities; your prepared data mounted read-only
# and OUTPUTS (default ./training_outputs) mounted for the run (model/, metrics.json, tensorboard/).
#
#   scripts/docker-train.sh PREPARED_DIR [ragtune train flags...]   -> $OUTPUTS/runs/docker
# Builds ragtune:cpu first (scripts/docker-build.sh); with IMAGE=... it runs that image, unbuilt.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCKER=${DOCKER:-docker}
OUTPUTS=${OUTPUTS:-$ROOT/training_outputs}
fail() { echo "error: $*" >&2; exit 2; }

[ $# -ge 1 ] || fail "usage: $0 PREPARED_DIR [ragtune train flags...]"
PREPARED=$(cd "$1" 2>/dev/null && pwd) || fail "$1: not a directory; run ragtune prepare first"
shift
[ -f "$PREPARED/train.parquet" ] || fail "$PREPARED has no train.parquet; run ragtune prepare first"
command -v "$DOCKER" >/dev/null 2>&1 || fail "$DOCKER not found; install Docker: https://docs.docker.com/engine/install/"
"$DOCKER" info >/dev/null 2>&1 || fail "no Docker engine answers ($DOCKER info failed); start it (e.g. dockerd or systemctl start docker)"
if [ -n "${IMAGE:-}" ]; then
  "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 || fail "image $IMAGE not found; build it: IMAGE=$IMAGE scripts/docker-build.sh"
else
  IMAGE=ragtune:${VARIANT:-cpu}
  IMAGE=$IMAGE DOCKER=$DOCKER "$ROOT/scripts/docker-build.sh" >&2
fi

mkdir -p "$OUTPUTS"
user="$(id -u):$(id -g)"
if [ "$(id -u)" = 0 ]; then  # never root inside the container: the outputs belong to uid 1000 then
  user=1000:1000
  chown 1000:1000 "$OUTPUTS"
fi
gpus=()
[ "${VARIANT:-cpu}" = cuda ] && gpus=(--gpus all)
"$DOCKER" run --rm "${gpus[@]}" --network none \
  --user "$user" --read-only --tmpfs /tmp --security-opt no-new-privileges --cap-drop ALL \
  -e RAGTUNE_CACHE=/outputs/.cache \
  -v "$PREPARED:/data:ro" -v "$OUTPUTS:/outputs" \
  "$IMAGE" ragtune train --data /data --output /outputs/runs/docker "$@"
echo "done: $OUTPUTS/runs/docker (tensorboard: ragtune tensorboard $OUTPUTS/runs/docker)"

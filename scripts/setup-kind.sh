#!/usr/bin/env bash
# A local Kubernetes cluster for `ragtune submit`: KIND with 1 control plane and 2 workers,
# Kubeflow Trainer v2, a local image registry on localhost:5001 wired to every node, and
# ./training_outputs bind-mounted into every node at /tmp/rag-training-output (the volume
# of deploy/training-storage.yaml), so a job's model and metrics appear on your machine.
#
#   scripts/setup-kind.sh all          # everything below, in order (idempotent)
#   scripts/setup-kind.sh registry     # the registry container on localhost:5001
#   scripts/setup-kind.sh cluster      # the KIND cluster, wired to the registry
#   scripts/setup-kind.sh trainer      # Kubeflow Trainer v2 + ragtune's runtime and storage
#   scripts/setup-kind.sh build-image  # build deploy/Dockerfile and push it to the registry
#   scripts/setup-kind.sh delete       # remove the cluster and the registry (outputs stay)
set -euo pipefail

CLUSTER=${CLUSTER:-ragtune}
REGISTRY_NAME=${REGISTRY_NAME:-ragtune-registry}
REGISTRY_PORT=${REGISTRY_PORT:-5001}
TRAINER_VERSION=${TRAINER_VERSION:-v2.3.0}
IMAGE=${IMAGE:-localhost:${REGISTRY_PORT}/ragtune:latest}
VARIANT=${VARIANT:-cpu}
DOCKER=${DOCKER:-docker}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTPUTS=${OUTPUTS:-$ROOT/training_outputs}

say() { printf '[setup-kind] %s\n' "$*"; }
die() { printf '[setup-kind] error: %s\n' "$*" >&2; exit 2; }

need() {
  local tool=$1 hint=$2
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found; install it: $hint"
}

need_docker() {
  need "$DOCKER" "https://docs.docker.com/engine/install/"
  "$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info failed); start Docker and retry"
}

registry() {
  need_docker
  if [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true)" = "true" ]; then
    say "registry $REGISTRY_NAME already running on localhost:$REGISTRY_PORT"
    return
  fi
  "$DOCKER" rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
  say "starting registry $REGISTRY_NAME on 127.0.0.1:$REGISTRY_PORT"
  "$DOCKER" run -d --restart=always -p "127.0.0.1:${REGISTRY_PORT}:5000" --network bridge --name "$REGISTRY_NAME" registry:2 >/dev/null
}

cluster() {
  need_docker
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  need kubectl "https://kubernetes.io/docs/tasks/tools/"
  mkdir -p "$OUTPUTS"
  chmod 0777 "$OUTPUTS"  # the job runs as uid 1000, whoever you are on the host
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "cluster $CLUSTER already exists"
  else
    say "creating cluster $CLUSTER (1 control plane, 2 workers); outputs: $OUTPUTS"
    local mount="    extraMounts:
      - hostPath: $OUTPUTS
        containerPath: /tmp/rag-training-output"
    kind create cluster --name "$CLUSTER" --config - <<KIND
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
nodes:
  - role: control-plane
$mount
  - role: worker
$mount
  - role: worker
$mount
KIND
  fi
  # Every node resolves localhost:$REGISTRY_PORT to the registry container (KIND's local-registry recipe).
  for node in $(kind get nodes --name "$CLUSTER"); do
    "$DOCKER" exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:${REGISTRY_PORT}"
    printf '[host."http://%s:5000"]\n' "$REGISTRY_NAME" |
      "$DOCKER" exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/localhost:${REGISTRY_PORT}/hosts.toml"
  done
  if [ "$("$DOCKER" inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REGISTRY_NAME" 2>/dev/null || echo null)" = "null" ]; then
    "$DOCKER" network connect kind "$REGISTRY_NAME" 2>/dev/null || say "start the registry first: $0 registry"
  fi
  kubectl apply -f - >/dev/null <<CM
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${REGISTRY_PORT}"
CM
}

trainer() {
  need kubectl "https://kubernetes.io/docs/tasks/tools/"
  kubectl cluster-info >/dev/null 2>&1 || die "no cluster reachable with the current kubeconfig; run: $0 cluster"
  say "installing Kubeflow Trainer $TRAINER_VERSION"
  kubectl apply --server-side -k "https://github.com/kubeflow/trainer.git/manifests/overlays/manager?ref=${TRAINER_VERSION}"
  kubectl -n kubeflow-system wait --for=condition=Available deployment --all --timeout=300s
  say "installing ragtune's storage and runtime (deploy/)"
  kubectl apply -f "$ROOT/deploy/training-storage.yaml"
  kubectl apply --server-side -f "$ROOT/deploy/runtime.yaml"
}

build_image() {
  need_docker
  say "building $IMAGE ($VARIANT) from deploy/Dockerfile"
  IMAGE=$IMAGE VARIANT=$VARIANT DOCKER=$DOCKER "$ROOT/scripts/docker-build.sh"
  "$DOCKER" push "$IMAGE"
}

delete() {
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  kind delete cluster --name "$CLUSTER" || true
  "$DOCKER" rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
  say "deleted cluster $CLUSTER and registry $REGISTRY_NAME; $OUTPUTS is kept"
}

case "${1:-all}" in
  all) registry; cluster; build_image; trainer; say "ready: ragtune submit --config run.yaml" ;;
  registry) registry ;;
  cluster) cluster ;;
  trainer) trainer ;;
  build-image) build_image ;;
  delete) delete ;;
  *) die "unknown step '$1'; use one of: all cluster trainer registry build-image delete" ;;
esac

#!/usr/bin/env bash
# Validates the Kubernetes manifests of this directory offline, with no
# cluster (scripts/test runs it before `cargo test`). Exits non-zero at the
# first step that finds a problem:
#
#   1. render: `kubectl kustomize` of this directory and of monitoring/;
#   2. schema: every rendered resource against the Kubernetes JSON schemas
#      of K8S_VERSION (default 1.32), from the PyPI package
#      kubernetes-validate in target/test-venv; strict, so an unknown or
#      misspelt field is an error, and so is a kind or apiVersion it has no
#      schema for;
#   3. semantics (validate.py): the reapi containers' flags against the
#      binaries' --help (when they are built), --advertise with a wildcard
#      --listen, probes on the metrics port, grace periods above the drain
#      times, disk budgets inside their volumes, selectors, and the
#      autoscaler's metric against the prometheus-adapter rule;
#   4. dry run: `kubectl apply --dry-run=client` of the rendered output.
#      kubectl needs an API server's discovery even for a client-side dry
#      run, so with no reachable cluster the step is skipped, saying so.
#
# Environment: K8S_VERSION (a Kubernetes version kubernetes-validate
# bundles), REAPI_BIN_DIR (where reapi-scheduler and reapi-worker are;
# default target/debug).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

k8s_version="${K8S_VERSION:-1.32}"
bin_dir="${REAPI_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}"
venv=target/test-venv

say() { echo "validate.sh: $*"; }

# Root runs apt-get directly; anyone else through sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  else
    sudo "$@"
  fi
}

# kubectl renders the manifests (`kubectl kustomize`). Where it is missing,
# apt-get installs `kubectl` if an apt source offers it, else Debian's
# `kubernetes-client` (an older kubectl whose kustomize renders these
# manifests the same).
if ! command -v kubectl >/dev/null; then
  say "kubectl is missing; installing it with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update
  if apt-cache policy kubectl | grep -q 'Candidate: [0-9]'; then
    package=kubectl
  elif apt-cache policy kubernetes-client | grep -q 'Candidate: [0-9]'; then
    package=kubernetes-client
  else
    say "no apt source offers kubectl or kubernetes-client: install kubectl" \
      "(any recent version; it renders the manifests with kubectl kustomize)" >&2
    exit 1
  fi
  as_root apt-get install -y "$package" || (cd / && as_root apt-get install -y "$package")
fi

# kubernetes-validate (JSON schemas of many Kubernetes versions, bundled:
# no network at validation time) in the tests' virtualenv.
if [[ ! -x $venv/bin/pip ]]; then
  python3 -m venv "$venv" || {
    as_root apt-get update && as_root apt-get install -y python3-venv &&
      python3 -m venv "$venv"
  }
fi
if ! "$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
  say "installing kubernetes-validate into $venv" >&2
  "$venv/bin/pip" install --quiet kubernetes-validate==1.37.0
fi
say "$(kubectl version --client 2>/dev/null | head -n 1);" \
  "kubernetes-validate $("$venv/bin/python" -c 'import kubernetes_validate as k; print(k.__version__)')"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

say "[1/4] render: kubectl kustomize deploy/kubernetes, deploy/kubernetes/monitoring"
for dir in deploy/kubernetes deploy/kubernetes/monitoring; do
  out="$tmp/$(basename "$dir").yaml"
  if ! kubectl kustomize "$dir" >"$out"; then
    say "FAIL: kubectl kustomize $dir" >&2
    exit 1
  fi
done
rendered=("$tmp/kubernetes.yaml" "$tmp/monitoring.yaml")

say "[2/4] schema: Kubernetes $k8s_version JSON schemas, strict"
"$venv/bin/python" deploy/kubernetes/validate.py schema "$k8s_version" "${rendered[@]}"

say "[3/4] semantics: flags (binaries in $bin_dir), probes, grace periods, disks, monitoring"
"$venv/bin/python" deploy/kubernetes/validate.py semantics "${rendered[@]}" \
  deploy/kubernetes/monitoring/prometheus-scrape-config.yaml "$bin_dir"

say "[4/4] dry run: kubectl apply --dry-run=client --validate=false"
if timeout 120 kubectl apply --dry-run=client --validate=false \
  -f "${rendered[0]}" -f "${rendered[1]}" >"$tmp/dry-run.log" 2>&1; then
  sed 's/^/  /' "$tmp/dry-run.log"
elif ! timeout 30 kubectl get --raw /version --request-timeout=10s >/dev/null 2>&1; then
  say "[4/4] skipped: kubectl apply needs an API server (for discovery) even with" \
    "--dry-run=client, and none is reachable: $(grep -m 1 -o 'dial tcp[^"]*\|no configuration[^"]*' "$tmp/dry-run.log" || tail -n 1 "$tmp/dry-run.log")"
else
  cat "$tmp/dry-run.log" >&2
  say "FAIL: kubectl apply --dry-run=client" >&2
  exit 1
fi

say "manifests valid"

#!/usr/bin/env bash
# Checks the Terraform in deploy/gcp:
#   - always: `terraform fmt -check`;
#   - when the google provider can be downloaded: `terraform init
#     -backend=false` and `terraform validate`, in a scratch copy so that the
#     work tree gets no .terraform/ or lock file. Without network (or a
#     provider mirror), that part is skipped with the reason, and the script
#     still succeeds.
# Exit status: non-zero when formatting or validation fails, or terraform is
# missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

if ! command -v terraform >/dev/null; then
  echo "validate.sh: terraform is not installed" >&2
  exit 1
fi
# A TF_CLI_CONFIG_FILE naming a missing file only adds a warning to every
# command's output.
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then
  unset TF_CLI_CONFIG_FILE
fi

echo "---- terraform fmt -check -recursive ($here)"
terraform fmt -check -recursive -diff "$here"
echo "formatting: ok"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$here"/*.tf "$here/templates" "$scratch"/
if [ -e "$here/.terraform.lock.hcl" ]; then
  cp "$here/.terraform.lock.hcl" "$scratch"/
fi

echo "---- terraform init -backend=false"
if ! init_log=$(terraform -chdir="$scratch" init -backend=false -input=false -no-color 2>&1); then
  if grep -q -E "Failed to query available provider packages|could not connect to|Failed to install provider|no such host|dial tcp|i/o timeout|connection refused" <<<"$init_log"; then
    echo "SKIPPED terraform validate: the google provider could not be downloaded"
    echo "(no network to registry.terraform.io and no provider mirror). terraform said:"
    grep -E "Error:|could not|no such host|dial tcp|timeout|refused" <<<"$init_log" | head -n 6 | sed 's/^/    /'
    exit 0
  fi
  echo "$init_log"
  echo "terraform init failed (not for lack of network)" >&2
  exit 1
fi

echo "---- terraform validate"
terraform -chdir="$scratch" validate -no-color

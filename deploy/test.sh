#!/usr/bin/env bash
# Runs every Herald test on a fresh Debian machine: installs redis-server and
# the Python judges if missing, builds the service binaries (some tests run
# them as real processes), runs the whole suite, then renders and validates
# the Kubernetes manifests.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$herald_root"
ensure_cargo
ensure_packages redis-server redis-server
ensure_python_tools
export HERALD_TEST_PYTHON="$herald_root/.venv/bin/python"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
"$herald_root/deploy/k8s/validate.sh"

#!/usr/bin/env bash
# Runs every Herald test on a fresh Debian machine: installs redis-server,
# Chromium with its driver and the Python judges if missing, builds the
# binaries (some tests run the services and the herald CLI as real
# processes), runs the whole suite, checks and unit-tests the alert rules,
# then renders and validates the Kubernetes manifests.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$herald_root"
ensure_cargo
ensure_packages redis-server redis-server
# Headless Chromium and its driver for the portal's browser tests (tests/browser/).
ensure_packages chromium chromium chromedriver chromium-driver
ensure_python_tools
export HERALD_TEST_PYTHON="$herald_root/.venv/bin/python"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
"$herald_root/deploy/observability/check.sh"
"$herald_root/deploy/k8s/validate.sh"

#!/usr/bin/env bash
# Herald's delivery benchmark on this machine, loopback only: installs what is
# missing (redis-server, wrk; perf when --perf is given) from Debian's
# packages, builds the release binaries, then runs tests/benches/delivery.rs,
# which starts its own Redis and the three services (with --cluster: a
# three-master Redis Cluster and two dispatchers), measures, and stops them.
# Flags go to the benchmark (`./deploy/bench.sh --help` lists them). The
# markdown report is printed and also written to target/bench/delivery.md.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$herald_root"
ensure_cargo
ensure_packages redis-server redis-server wrk wrk
for arg in "$@"; do
  if [ "$arg" = "--perf" ]; then ensure_packages perf linux-perf; fi
done
cargo build --release --bins
mkdir -p target/bench
cargo bench -p herald-tests --bench delivery -- "$@" | tee target/bench/delivery.md

# Shared by deploy/run.sh and deploy/test.sh: install what a fresh Debian
# machine is missing. Sourced, not run.

herald_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

# Debian packages, installed only when their command is missing.
ensure_packages() {
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ] || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q "${missing[@]}" >/dev/null ||
    { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "${missing[@]}" >/dev/null; }
}

ensure_cargo() {
  command -v cargo >/dev/null 2>&1 || { [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"; }
  command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
}

# The Python test judges, in a project-local virtualenv.
ensure_python_tools() {
  local venv="$herald_root/.venv" req="$herald_root/tests/requirements.txt"
  ensure_packages python3 python3
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" 2>/dev/null || { ensure_packages dummy python3-venv; python3 -m venv "$venv"; }
  fi
  if ! cmp -s "$req" "$venv/.installed-requirements"; then
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.installed-requirements"
  fi
}

# cargo-deny, from crates.io, for the supply-chain checks in .ci/run.
ensure_cargo_deny() {
  command -v cargo-deny >/dev/null 2>&1 && return 0
  echo "installing cargo-deny from crates.io" >&2
  cargo install --locked --quiet cargo-deny@^0.20
}

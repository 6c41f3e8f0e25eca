#!/usr/bin/env bash
# Every quire test, from a fresh clone: README's test command, and what .ci/run calls.
# Starts what it needs (PostgreSQL, the npm test clients) when it is not there.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo "==> [$(( $(date +%s) - started ))s] $*"; }

step "checking tools"
command -v cargo >/dev/null || { echo "error: cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "error: node and npm are needed for the stock Yjs client tests: install Node.js 20 (Debian: apt-get install nodejs npm)" >&2
  exit 1
}

step "PostgreSQL"
# shellcheck source=scripts/ensure-postgres.sh
. scripts/ensure-postgres.sh
ensure_postgres
trap stop_started_postgres EXIT

if [ -f tests/js/package-lock.json ]; then
  step "installing the JS test clients (npm ci in tests/js)"
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi

step "format check (cargo fmt)"
cargo fmt --all -- --check || { echo "error: run 'cargo fmt --all' to format the code" >&2; exit 1; }

step "building and running every Rust test (cargo test --workspace)"
cargo test --workspace --locked

step "all tests passed"

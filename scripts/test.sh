#!/usr/bin/env bash
# Every quire test, from a fresh clone: README's test command, and what .ci/run calls.
# Starts or installs what it needs (PostgreSQL, the npm packages, Chromium, nats-server, redis-server) when it
# is not there.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo "==> [$(( $(date +%s) - started ))s] $*"; }

step "checking tools"
command -v cargo >/dev/null || { echo "error: cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || {
  echo "error: python3 (with venv) is needed for the schemathesis REST API test: install it (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
}
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "error: node and npm are needed for the stock Yjs client and browser tests: install Node.js 20 (Debian: apt-get install nodejs npm)" >&2
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

step "installing the browser client's packages (npm ci in web/)"
npm ci --prefix web --no-audit --no-fund --loglevel=error

step "Chromium for the browser tests"
# shellcheck source=scripts/ensure-chromium.sh
. scripts/ensure-chromium.sh
ensure_chromium

step "nats-server and redis-server for the cluster tests"
# shellcheck source=scripts/ensure-bus.sh
. scripts/ensure-bus.sh
ensure_bus

step "format check (cargo fmt)"
cargo fmt --all -- --check || { echo "error: run 'cargo fmt --all' to format the code" >&2; exit 1; }

step "lints (cargo clippy --workspace --all-targets -- -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings || {
  echo "error: fix the clippy findings above (the lint policy is [workspace.lints] in Cargo.toml)" >&2
  exit 1
}

step "REST API contract: schemathesis against a live server, deterministic (scripts/schemathesis.sh)"
./scripts/schemathesis.sh

step "building and running every Rust test (cargo test --workspace)"
cargo test --workspace --locked

step "browser tests (web/: the committed bundle is fresh and within budget; the page in headless Chromium)"
cargo build -p quire-backend --bin quire-server --locked
target_dir=$(cargo metadata --format-version 1 --no-deps --locked | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
QUIRE_SERVER_BIN="$target_dir/debug/quire-server" npm test --prefix web

step "all tests passed"

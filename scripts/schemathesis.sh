#!/usr/bin/env bash
# The REST API contract test: schemathesis (PyPI) fuzzes a live quire-server on SQLite, with a
# small body limit, from its own OpenAPI document: no 5xx, every response conforms to the
# document (`--checks all`). Called by scripts/test.sh; runs on its own too.
#
# schemathesis lives in a venv under target/ (installed once, pinned). QUIRE_SCHEMATHESIS_SEED
# replays a run; QUIRE_SCHEMATHESIS_SECS bounds its time (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
dir=target/schemathesis
venv=$dir/venv
command -v python3 >/dev/null || { echo "error: python3 is needed for schemathesis (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
if [ "$("$venv/bin/st" --version 2>/dev/null || true)" != "st, version $version" ]; then
  echo "    installing schemathesis $version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "error: cannot make a Python venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --locked --quiet -p quire-backend --bin quire-server
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
run=$(mktemp -d "${TMPDIR:-/tmp}/quire-schemathesis.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$run"
}
trap cleanup EXIT

# A small body limit, so the 413 path is exercised too.
"$target_dir/debug/quire-server" --listen 127.0.0.1:0 --database-url "sqlite:$run/quire.db" \
  --max-body-bytes 16384 >"$run/stdout" 2>"$run/server.log" &
server_pid=$!
addr=
for _ in $(seq 1 300); do
  addr=$(sed -n 's/^listening on //p' "$run/stdout" | head -n 1)
  [ -n "$addr" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$run/server.log" >&2; echo "error: quire-server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "error: quire-server did not start" >&2; exit 1; }

status=0
# From inside $dir: schemathesis keeps its caches in ./.schemathesis.
(
  cd "$dir"
  venv/bin/st --config-file ../../scripts/schemathesis.toml run "http://$addr/api/openapi.json" \
    --url "http://$addr" --checks all --max-examples 25 \
    --max-time "${QUIRE_SCHEMATHESIS_SECS:-60}" --seed "${QUIRE_SCHEMATHESIS_SEED:-20261122}" \
    --request-timeout 10 --generation-database examples \
    --no-color --report junit --report-dir report
) || status=$?
if grep -q "panicked" "$run/server.log"; then
  echo "error: quire-server panicked during the schemathesis run:" >&2
  grep -A5 "panicked" "$run/server.log" >&2
  status=1
fi
exit $status

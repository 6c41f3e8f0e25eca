#!/usr/bin/env bash
# The REST API contract test: schemathesis (PyPI) fuzzes a live quire-server on SQLite, with a
# small body limit, from its own OpenAPI document: no 5xx, every response conforms to the
# document (`--checks all`). Called by scripts/test.sh; runs on its own too.
#
# Two modes:
# - default (the gate: scripts/test.sh, CI): deterministic. The examples, coverage and fuzzing
#   phases, Hypothesis derandomized, 100 cases per operation, no time budget and no example
#   database: every run on every machine sends the same ~2,000 requests (checked: same count
#   twice) and gets the same verdict. The stateful phase is left to --explore: its scenarios follow
#   the ids the server makes at random, so its cases differ from run to run (137 vs 87 seen).
# - `--explore [SECS]`: the random search, opt-in. A new seed each run (printed; set
#   QUIRE_SCHEMATHESIS_SEED to replay one), fuzzing and stateful phases repeated until SECS
#   (default 300) are spent. Whatever it finds becomes a fixed case in tests/tests/rest.rs.
#
# schemathesis lives in a venv under target/ (installed once, pinned).
set -euo pipefail
cd "$(dirname "$0")/.."

explore=
explore_secs=300
case "${1:-}" in
  --explore) explore=1; [ -n "${2:-}" ] && explore_secs=$2 ;;
  "") ;;
  *) echo "usage: $0 [--explore [SECONDS]]" >&2; exit 2 ;;
esac

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

# A small body limit, so the 413 path is exercised too; change-feed long polls held 1 s at most
# (within the 10 s request timeout, whatever `wait` schemathesis picks).
"$target_dir/debug/quire-server" --listen 127.0.0.1:0 --database-url "sqlite:$run/quire.db" \
  --max-body-bytes 16384 --max-feed-wait-secs 1 >"$run/stdout" 2>"$run/server.log" &
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
  if [ -n "$explore" ]; then
    seed=${QUIRE_SCHEMATHESIS_SEED:-$(( $(date +%s%N) % 1000000000 ))}
    echo "    exploring for ${explore_secs}s with seed $seed (replay: QUIRE_SCHEMATHESIS_SEED=$seed $0 --explore $explore_secs)"
    mode=(--max-examples 200 --max-time "$explore_secs" --seed "$seed" --generation-database none)
  else
    mode=(--phases examples,coverage,fuzzing --max-examples 100 --generation-deterministic)
  fi
  venv/bin/st --config-file ../../scripts/schemathesis.toml run "http://$addr/api/openapi.json" \
    --url "http://$addr" --checks all "${mode[@]}" \
    --request-timeout 10 --no-color --report junit --report-dir report
) || status=$?
if grep -q "panicked" "$run/server.log"; then
  echo "error: quire-server panicked during the schemathesis run:" >&2
  grep -A5 "panicked" "$run/server.log" >&2
  status=1
fi
exit $status

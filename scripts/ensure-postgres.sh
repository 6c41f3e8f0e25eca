# Sourced by scripts/test.sh: makes sure a PostgreSQL server is reachable and exports
# QUIRE_TEST_PG_URL (a URL to its `postgres` database; tests create their own databases).
#
# Order: $QUIRE_TEST_PG_URL if set; a server already on 127.0.0.1:5432; otherwise a throwaway
# cluster in $TMPDIR/quire-test-pg on port 54329 (outside the checkout: the postgres user
# may not enter a clone made under a private folder), started with this machine's PostgreSQL binaries
# (installed with apt-get when missing and we are root).

pg_bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

pg_ready() { # URL
  local bin
  bin=$(pg_bin_dir)
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -d "$1" -t 3
  elif [ -n "$bin" ]; then
    "$bin/pg_isready" -q -d "$1" -t 3
  else
    return 1
  fi
}

ensure_postgres() {
  if [ -n "${QUIRE_TEST_PG_URL:-}" ]; then
    if ! pg_ready "$QUIRE_TEST_PG_URL"; then
      echo "error: QUIRE_TEST_PG_URL=$QUIRE_TEST_PG_URL does not answer; start that server or unset the variable" >&2
      return 1
    fi
    echo "    using PostgreSQL at $QUIRE_TEST_PG_URL"
    return 0
  fi
  local default_url="postgres://postgres@127.0.0.1:5432/postgres"
  if pg_ready "$default_url"; then
    export QUIRE_TEST_PG_URL="$default_url"
    echo "    using the PostgreSQL server already running on 127.0.0.1:5432"
    return 0
  fi

  local bin
  bin=$(pg_bin_dir)
  if [ -z "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "    PostgreSQL is not installed: installing it with apt-get (one time)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      bin=$(pg_bin_dir)
    fi
    if [ -z "$bin" ]; then
      echo "error: no PostgreSQL found. Install it (Debian: apt-get install postgresql) or set QUIRE_TEST_PG_URL to a server you run" >&2
      return 1
    fi
  fi

  local port=54329
  local base="${TMPDIR:-/tmp}/quire-test-pg"
  local data="$base/data"
  local log="$base/server.log"
  local url="postgres://postgres@127.0.0.1:$port/postgres"
  export QUIRE_TEST_PG_URL="$url"
  if pg_ready "$url"; then
    echo "    using the test cluster already running on port $port"
    return 0
  fi
  # initdb and postgres refuse to run as root: run them as the postgres user then.
  local run=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    run=(runuser -u postgres --)
  fi
  mkdir -p "$base" && chmod 755 "$base"
  if [ "$(id -u)" = 0 ]; then chown postgres "$base"; fi
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "    creating a throwaway PostgreSQL cluster in $data"
    rm -rf "$data"
    (cd "$base" && "${run[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >"$base/initdb.log" 2>&1) || {
      echo "error: initdb failed; see $base/initdb.log" >&2
      return 1
    }
  fi
  echo "    starting PostgreSQL on 127.0.0.1:$port (log: $log)"
  (cd "$base" && "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k /tmp -c fsync=on" start >/dev/null) || {
    echo "error: PostgreSQL did not start; see $log" >&2
    return 1
  }
  QUIRE_STARTED_PG="$bin/pg_ctl -D $data"
  QUIRE_STARTED_PG_DIR="$base"
  QUIRE_STARTED_PG_RUN="${run[*]}"
}

stop_started_postgres() {
  if [ -n "${QUIRE_STARTED_PG:-}" ]; then
    echo "==> stopping the PostgreSQL test cluster"
    (cd "$QUIRE_STARTED_PG_DIR" && $QUIRE_STARTED_PG_RUN $QUIRE_STARTED_PG -m fast stop >/dev/null 2>&1) || true
  fi
}

# Sourced by scripts/test.sh: makes sure nats-server and redis-server are there for the cluster
# tests (tests/tests/cluster.rs starts private ones on free ports) and exports
# QUIRE_NATS_SERVER and QUIRE_REDIS_SERVER.
#
# Order for each: $QUIRE_NATS_SERVER / $QUIRE_REDIS_SERVER if set; the binary on PATH or in
# /usr/sbin or /usr/bin; otherwise Debian's package is installed with apt-get (when we are root).

# ensure_bus_server VAR BINARY PACKAGE
ensure_bus_server() {
  local var=$1 binary=$2 package=$3 found
  found=${!var:-}
  if [ -n "$found" ]; then
    if [ ! -x "$found" ]; then
      echo "error: $var=$found is not an executable; point it at $binary or unset it" >&2
      return 1
    fi
    echo "    using $binary at $found"
    return 0
  fi
  locate() {
    found=$(command -v "$binary" || true)
    for dir in /usr/sbin /usr/bin; do
      if [ -z "$found" ] && [ -x "$dir/$binary" ]; then
        found=$dir/$binary
      fi
    done
  }
  locate
  if [ -z "$found" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "    $binary is not installed: installing Debian's $package with apt-get (one time)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    fi
    locate
    if [ -z "$found" ]; then
      echo "error: the cluster tests need $binary. Install it (Debian: sudo apt-get install $package)" >&2
      echo "       or set $var to a $binary binary" >&2
      return 1
    fi
  fi
  export "$var=$found"
  echo "    using $("$found" --version 2>/dev/null | head -1 || echo "$found")"
}

ensure_bus() {
  ensure_bus_server QUIRE_NATS_SERVER nats-server nats-server &&
    ensure_bus_server QUIRE_REDIS_SERVER redis-server redis-server
}

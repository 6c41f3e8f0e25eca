# Sourced by scripts/test.sh: makes sure nats-server is there for the cluster tests
# (tests/tests/cluster.rs starts private ones on free ports) and exports QUIRE_NATS_SERVER.
#
# Order: $QUIRE_NATS_SERVER if set; nats-server on PATH or in /usr/sbin; otherwise Debian's
# `nats-server` package is installed with apt-get (when we are root).

ensure_nats() {
  if [ -n "${QUIRE_NATS_SERVER:-}" ]; then
    if [ ! -x "$QUIRE_NATS_SERVER" ]; then
      echo "error: QUIRE_NATS_SERVER=$QUIRE_NATS_SERVER is not an executable; point it at nats-server or unset it" >&2
      return 1
    fi
    echo "    using nats-server at $QUIRE_NATS_SERVER"
    return 0
  fi
  local found
  found=$(command -v nats-server || true)
  [ -z "$found" ] && [ -x /usr/sbin/nats-server ] && found=/usr/sbin/nats-server
  if [ -z "$found" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "    nats-server is not installed: installing Debian's nats-server with apt-get (one time)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    fi
    found=$(command -v nats-server || true)
    [ -z "$found" ] && [ -x /usr/sbin/nats-server ] && found=/usr/sbin/nats-server
    if [ -z "$found" ]; then
      echo "error: the cluster tests need nats-server. Install it (Debian: sudo apt-get install nats-server)" >&2
      echo "       or set QUIRE_NATS_SERVER to a nats-server binary" >&2
      return 1
    fi
  fi
  export QUIRE_NATS_SERVER="$found"
  echo "    using $("$found" --version 2>/dev/null || echo "$found")"
}

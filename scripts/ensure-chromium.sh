# Sourced by scripts/test.sh: makes sure a headless-capable Chromium is there for the browser
# tests (web/test) and exports QUIRE_CHROMIUM, its path.
#
# Order: $QUIRE_CHROMIUM if set; Debian's /usr/bin/chromium; otherwise Debian's `chromium`
# package is installed with apt-get (when we are root). Playwright cannot download browsers of
# its own here, so playwright-core drives this one.

ensure_chromium() {
  if [ -n "${QUIRE_CHROMIUM:-}" ]; then
    if [ ! -x "$QUIRE_CHROMIUM" ]; then
      echo "error: QUIRE_CHROMIUM=$QUIRE_CHROMIUM is not an executable; point it at a Chromium binary or unset it" >&2
      return 1
    fi
    echo "    using Chromium at $QUIRE_CHROMIUM"
    return 0
  fi
  local debian=/usr/bin/chromium
  if [ ! -x "$debian" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "    Chromium is not installed: installing Debian's chromium with apt-get (one time)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    if [ ! -x "$debian" ]; then
      echo "error: the browser tests need Chromium at $debian. Install it (Debian: sudo apt-get install chromium)" >&2
      echo "       or set QUIRE_CHROMIUM to a Chromium/Chrome binary" >&2
      return 1
    fi
  fi
  export QUIRE_CHROMIUM="$debian"
  echo "    using $("$debian" --version 2>/dev/null || echo "$debian")"
}

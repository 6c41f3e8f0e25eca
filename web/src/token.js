// The access token, when the server runs with --auth-secret: taken from the page's URL
// (`?token=…`), kept for this tab in sessionStorage so moving between pages keeps it, and sent
// with every REST call (Authorization: Bearer) and WebSocket (y-websocket `params`: `?token=`).
// The page reads the token's claims only to show read-only access; the server enforces it.

const KEY = 'quire:token'

function fromUrl () {
  try {
    const params = new URLSearchParams(location.search)
    const t = params.get('token')
    if (t) {
      sessionStorage.setItem(KEY, t)
      // Out of the address bar (and so out of copied links and the history).
      params.delete('token')
      const qs = params.toString()
      history.replaceState(history.state, '', location.pathname + (qs ? '?' + qs : '') + location.hash)
      return t
    }
    return sessionStorage.getItem(KEY)
  } catch {
    return null
  }
}

const current = fromUrl()

/** The token, or null when none was given (an open server). */
export function token () {
  return current
}

/** The token's claims ({ doc, role, exp }), or null. */
export function claims () {
  if (!current) return null
  try {
    const part = current.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    return JSON.parse(atob(part + '='.repeat((4 - part.length % 4) % 4)))
  } catch {
    return null
  }
}

/** True when the token allows only reading. */
export function readOnly () {
  return claims()?.role === 'read-only'
}

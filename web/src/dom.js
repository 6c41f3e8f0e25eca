// Small DOM and formatting helpers (no framework).

/** `h('div', { class: 'x', onclick }, child, 'text', [more])` */
export function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else if (k === 'dataset') Object.assign(el.dataset, v)
    else if (k in el && typeof v !== 'string') el[k] = v
    else el.setAttribute(k, v === true ? '' : v)
  }
  append(el, children)
  return el
}

function append (el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else el.append(c instanceof Node ? c : String(c))
  }
}

export function clear (el) {
  while (el.firstChild) el.firstChild.remove()
}

/** A timestamp from the API: RFC 3339 string, or seconds / milliseconds since the epoch. */
export function toDate (t) {
  if (t === null || t === undefined || t === '') return null
  if (typeof t === 'number') return new Date(t < 1e12 ? t * 1000 : t)
  const d = new Date(t)
  return Number.isNaN(d.getTime()) ? null : d
}

const rtf = typeof Intl !== 'undefined' && Intl.RelativeTimeFormat
  ? new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })
  : null

export function relativeTime (t, now = Date.now()) {
  const d = toDate(t)
  if (!d) return '—'
  const s = Math.round((d.getTime() - now) / 1000)
  const abs = Math.abs(s)
  if (abs < 45) return 'just now'
  const steps = [[60, 'second'], [3600, 'minute'], [86400, 'hour'], [604800, 'day'], [2629800, 'week'], [31557600, 'month'], [Infinity, 'year']]
  const sizes = { second: 1, minute: 60, hour: 3600, day: 86400, week: 604800, month: 2629800, year: 31557600 }
  for (const [limit, unit] of steps) {
    if (abs < limit) {
      const n = Math.round(s / sizes[unit])
      return rtf ? rtf.format(n, unit) : `${Math.abs(n)} ${unit}s ${n < 0 ? 'ago' : 'from now'}`
    }
  }
  return d.toLocaleString()
}

export function fullTime (t) {
  const d = toDate(t)
  return d ? d.toLocaleString() : ''
}

export function plural (n, one, many = one + 's') {
  return `${Number(n).toLocaleString()} ${n === 1 ? one : many}`
}

let toastBox = null

/** A short message at the bottom of the page; `kind` is 'error' or 'info'. */
export function toast (message, kind = 'info', ms = 4000) {
  if (!toastBox) {
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' })
    document.body.append(toastBox)
  }
  const t = h('div', { class: `toast toast-${kind}` }, message)
  toastBox.append(t)
  setTimeout(() => {
    t.classList.add('leaving')
    setTimeout(() => t.remove(), 300)
  }, ms)
}

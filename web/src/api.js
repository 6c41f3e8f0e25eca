// The REST API (/api) as the page uses it. Every error the server sends is an RFC 9457
// problem+json body; `ApiError` carries its status and its `detail` (or `title`).
// Positions and lengths are in Unicode code points, as the server counts them.

import { token } from './token.js'

export class ApiError extends Error {
  constructor (status, message, problem = null) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.problem = problem
  }
}

const enc = encodeURIComponent

async function request (method, path, { json, text, signal, query } = {}) {
  let url = '/api' + path
  if (query) {
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') params.set(k, String(v))
    }
    const qs = params.toString()
    if (qs) url += '?' + qs
  }
  const headers = { Accept: 'application/json, application/problem+json, text/plain' }
  if (token()) headers.Authorization = `Bearer ${token()}`
  let body
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(json)
  } else if (text !== undefined) {
    headers['Content-Type'] = 'text/plain; charset=utf-8'
    body = text
  }
  let res
  try {
    res = await fetch(url, { method, headers, body, signal, cache: 'no-store' })
  } catch (err) {
    if (err?.name === 'AbortError') throw err
    throw new ApiError(0, 'The server cannot be reached')
  }
  const type = res.headers.get('content-type') || ''
  if (!res.ok) {
    let problem = null
    if (type.includes('json')) {
      try { problem = await res.json() } catch {}
    }
    const message = problem?.detail || problem?.title || `${res.status} ${res.statusText}`.trim()
    throw new ApiError(res.status, message, problem)
  }
  if (res.status === 204) return null
  if (type.includes('json')) return res.json()
  return res.text()
}

/** A page of a list (`{ documents, next_cursor }`, `{ entries, next_before }`) as `{ items, next }`. */
function normalizeList (body, keys) {
  if (Array.isArray(body)) return { items: body, next: null }
  const items = keys.map((k) => body?.[k]).find(Array.isArray) ?? []
  const next = body?.next_cursor ?? body?.next_before ?? null
  return { items, next }
}

export const api = {
  /** `{ items: [{ id, name, length, updated }], next }`; `next` is the cursor of the next page. */
  async listDocuments ({ limit = 50, cursor } = {}) {
    const body = await request('GET', '/documents', { query: { limit, cursor } })
    return normalizeList(body, ['documents'])
  },
  createDocument ({ name, text } = {}) {
    const json = {}
    if (name) json.name = name
    if (text) json.text = text
    return request('POST', '/documents', { json })
  },
  getDocument (id) {
    return request('GET', `/documents/${enc(id)}`)
  },
  renameDocument (id, name) {
    return request('PATCH', `/documents/${enc(id)}`, { json: { name } })
  },
  deleteDocument (id) {
    return request('DELETE', `/documents/${enc(id)}`)
  },
  /** The text now, or as of `version` (a history sequence number). */
  text (id, version) {
    return request('GET', `/documents/${enc(id)}/text`, { query: { version } })
  },
  /** `{ items: [{ seq, time, origin, inserted, deleted }], next }`, newest first. */
  async history (id, { limit = 50, before } = {}) {
    const body = await request('GET', `/documents/${enc(id)}/history`, { query: { limit, before, group: 'none' } })
    return normalizeList(body, ['entries'])
  },
  /** Changes (rows grouped by author and time), newest first: `{ items, next }`. */
  async changes (id, { limit = 30, before } = {}) {
    const body = await request('GET', `/documents/${enc(id)}/history`, { query: { limit, before } })
    return normalizeList(body, ['changes'])
  },
  /** Named versions, newest version first. */
  async namedVersions (id) {
    return (await request('GET', `/documents/${enc(id)}/versions`)).versions ?? []
  },
  nameVersion (id, name, version) {
    return request('POST', `/documents/${enc(id)}/versions`, { json: { name, version } })
  },
  /** Who typed each part of the text: `{ version, length, authors, spans }`. */
  blame (id, version) {
    return request('GET', `/documents/${enc(id)}/blame`, { query: { version } })
  },
  restore (id, version) {
    return request('POST', `/documents/${enc(id)}/restore`, { json: { version } })
  },
  /** Words of the document that start with `prefix`, most frequent first (the server's trie). */
  async complete (id, prefix, { limit = 20, signal } = {}) {
    const body = await request('GET', `/documents/${enc(id)}/complete`, { query: { prefix, limit }, signal })
    return (body?.completions ?? []).map((c) => c?.word).filter((w) => typeof w === 'string')
  }
}

// One open document: a Y.Doc kept in IndexedDB (y-indexeddb) and synced with quire-server by
// the stock y-websocket provider, shown in CodeMirror 6 through y-codemirror.next.
//
// A keystroke: CodeMirror transaction -> y-codemirror's ySync plugin applies it to
// ydoc.getText('content') -> the Y.Doc emits an update -> y-websocket sends it as one binary
// frame (sync Update) to /ws/{id}, and y-indexeddb stores it locally. Remote updates come back
// the other way; cursors and names travel as awareness states.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { readOnly, token } from './token.js'
import { IndexeddbPersistence } from 'y-indexeddb'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'
import { EditorState, Compartment } from '@codemirror/state'
import {
  EditorView, keymap, lineNumbers, highlightActiveLineGutter, highlightSpecialChars,
  drawSelection, dropCursor, rectangularSelection, crosshairCursor, highlightActiveLine
} from '@codemirror/view'
import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import { search, searchKeymap, highlightSelectionMatches, openSearchPanel } from '@codemirror/search'
import { autocompletion, completionKeymap } from '@codemirror/autocomplete'
import { bracketMatching } from '@codemirror/language'
import { api } from './api.js'

/**
 * A WebSocket constructor for y-websocket that, the first time it is asked for the URL boot.js
 * already opened, returns that socket and replays the events it had (open, messages, close) to
 * the handlers y-websocket has just set. The replay runs as a microtask: after y-websocket's
 * synchronous setup, before any later socket event, so nothing is lost or reordered.
 */
function adoptEarlySocket () {
  const early = window.__quireEarlySocket
  window.__quireEarlySocket = null
  function QuireWebSocket (url, protocols) {
    if (early && early.url === url && !early.taken) {
      early.taken = true
      const ws = early.ws
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null
      queueMicrotask(() => {
        for (const e of early.events) {
          const handler = ws['on' + e.type]
          if (handler) handler.call(ws, e)
        }
        early.events.length = 0
      })
      return ws
    }
    return protocols ? new WebSocket(url, protocols) : new WebSocket(url)
  }
  QuireWebSocket.CONNECTING = WebSocket.CONNECTING
  QuireWebSocket.OPEN = WebSocket.OPEN
  QuireWebSocket.CLOSING = WebSocket.CLOSING
  QuireWebSocket.CLOSED = WebSocket.CLOSED
  return QuireWebSocket
}

/** The shared text every quire client edits. */
export const TEXT_NAME = 'content'

/** How long an empty local copy waits for the server before the editor accepts input anyway. */
const FIRST_SYNC_WAIT_MS = 1000

const WORD = /[\p{L}\p{N}_]+/gu

/** Completions from the server's trie (`/complete`); the document's own words when it is away. */
function completionSource (docId) {
  return async (ctx) => {
    const word = ctx.matchBefore(/[\p{L}\p{N}_]+/u)
    if (!word && !ctx.explicit) return null
    const from = word ? word.from : ctx.pos
    const prefix = word ? word.text : ''
    if (!ctx.explicit && prefix.length < 2) return null
    const controller = new AbortController()
    ctx.addEventListener('abort', () => controller.abort())
    let words
    try {
      words = prefix ? await api.complete(docId, prefix, { limit: 30, signal: controller.signal }) : []
    } catch (err) {
      if (ctx.aborted) return null
      words = localWords(ctx.state.doc.toString(), prefix, from)
    }
    if (ctx.aborted) return null
    const options = []
    const seen = new Set([prefix])
    for (const w of words) {
      if (seen.has(w)) continue
      seen.add(w)
      options.push({ label: w, type: 'text', boost: -options.length / 100 })
    }
    return options.length ? { from, options, filter: false } : null
  }
}

function localWords (text, prefix, skipAt) {
  if (text.length > 2_000_000) return []
  const counts = new Map()
  for (const m of text.matchAll(WORD)) {
    if (m.index === skipAt || !m[0].startsWith(prefix) || m[0] === prefix) continue
    counts.set(m[0], (counts.get(m[0]) ?? 0) + 1)
  }
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 30).map(([w]) => w)
}

const theme = EditorView.theme({
  '&': { height: '100%', fontSize: 'var(--editor-font-size)', backgroundColor: 'var(--editor-bg)' },
  '.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '1.6' },
  '.cm-content': { padding: '16px 0 40vh', caretColor: 'var(--accent)' },
  '.cm-line': { padding: '0 24px 0 12px' },
  '.cm-gutters': {
    backgroundColor: 'var(--editor-bg)', color: 'var(--faint)', border: 'none', paddingLeft: '8px'
  },
  '.cm-activeLineGutter': { backgroundColor: 'transparent', color: 'var(--text)' },
  '.cm-activeLine': { backgroundColor: 'var(--active-line)' },
  '&.cm-focused .cm-cursor': { borderLeftColor: 'var(--accent)', borderLeftWidth: '2px' },
  '.cm-selectionBackground, &.cm-focused .cm-selectionBackground, ::selection': {
    backgroundColor: 'var(--selection) !important'
  },
  '.cm-ySelectionInfo': {
    opacity: 1, fontFamily: 'var(--sans)', fontWeight: '600', fontSize: '11px', top: '-1.45em',
    padding: '1px 5px', borderRadius: '4px 4px 4px 0', lineHeight: '1.35'
  },
  '.cm-ySelectionCaret': { borderLeftWidth: '2px' },
  '.cm-panels': { backgroundColor: 'var(--panel)', color: 'var(--text)', fontFamily: 'var(--sans)' },
  '.cm-panels-top': { borderBottom: '1px solid var(--border)' },
  '.cm-tooltip': { fontFamily: 'var(--sans)', borderRadius: '6px', border: '1px solid var(--border)' },
  '.cm-panel.cm-search': { padding: '8px 40px 8px 12px', fontSize: '13px', lineHeight: '36px' },
  '.cm-panel.cm-search input, .cm-panel.cm-search button, .cm-panel.cm-search label': { margin: '0 6px 0 0' },
  '.cm-textfield': {
    height: '28px', width: '220px', padding: '0 8px', fontSize: '13px', lineHeight: '26px', verticalAlign: 'middle',
    border: '1px solid var(--border)', borderRadius: '6px', background: 'var(--editor-bg)', color: 'var(--text)'
  },
  '.cm-button': {
    height: '28px', padding: '0 10px', fontSize: '13px', lineHeight: '26px', verticalAlign: 'middle', cursor: 'pointer',
    backgroundImage: 'none', background: 'var(--panel)', color: 'var(--text)',
    border: '1px solid var(--border)', borderRadius: '6px'
  },
  '.cm-button:hover': { background: 'var(--hover)' },
  '.cm-panel.cm-search label': { fontSize: '13px', color: 'var(--muted)', verticalAlign: 'middle' },
  '.cm-panel.cm-search input[type=checkbox]': { verticalAlign: 'middle', margin: '0 4px 0 0' },
  '.cm-panel.cm-search [name=close]': { top: '6px', right: '10px', fontSize: '20px', color: 'var(--muted)' },
  '.cm-searchMatch': { backgroundColor: '#ffe48a66', outline: '1px solid #e2b70088' },
  '.cm-searchMatch-selected': { backgroundColor: '#ffc83d' }
})

/**
 * A live document. `onChange` is called whenever the connection state, the people present or
 * the text length changes.
 */
export class Session {
  constructor ({ parent, docId, user, wrap = true, onChange = () => {}, authorship = null }) {
    this.docId = docId
    this.onChange = onChange
    this.state = 'connecting'
    this.editable = false
    this.editableAt = null
    this.closedReason = null
    this._failedSinceSync = false
    this._destroyed = false
    /** performance.now() of each step of opening, for the page-load figures. */
    this.timings = { created: performance.now() }

    this.ydoc = new Y.Doc()
    this.ytext = this.ydoc.getText(TEXT_NAME)
    this.undoManager = new Y.UndoManager(this.ytext)

    // The local copy: offline edits live here until the server has them.
    this.local = new IndexeddbPersistence(`quire:${docId}`, this.ydoc)
    this._localLoaded = false
    this.local.whenSynced.then(() => {
      this.timings.localLoaded = performance.now()
      this._localLoaded = true
      this._maybeEditable()
    }, () => {
      this._localLoaded = true
      this._maybeEditable()
    })

    const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`
    // Read-only access (a read-only token): the editor never accepts input; the server would
    // refuse the changes anyway.
    this.readOnlyAccess = readOnly()
    this.provider = new WebsocketProvider(wsBase, docId, this.ydoc, {
      maxBackoffTime: 4000,
      params: token() ? { token: token() } : {},
      WebSocketPolyfill: adoptEarlySocket()
    })
    this.awareness = this.provider.awareness
    this.setUser(user)

    this.provider.on('status', () => this._update())
    this.provider.on('sync', (synced) => {
      if (synced) {
        this._failedSinceSync = false
        this.timings.synced ??= performance.now()
      }
      this._maybeEditable()
      this._update()
    })
    this.provider.on('connection-close', () => this._connectionFailed())
    this.provider.on('connection-error', () => this._connectionFailed())
    // 4400-4499: the server says reconnecting cannot help (4404: the document was deleted).
    this.provider.on('closed', ({ code, reason }) => {
      const deleted = code === 4404
      // 4401 (token expired or revoked) and the like: edits not yet sent stay in the offline
      // copy and merge when the document is opened again with a valid token.
      this.close(deleted ? 'this document was deleted' : reason || `the server closed the connection (${code})`, { keepLocal: !deleted })
    })
    this.awareness.on('change', () => this._update())

    // The browser knows before the socket does: say so at once, and retry at once when back.
    this._onOnline = () => {
      if (!this.provider.wsconnected && this.provider.shouldConnect) {
        this.provider.disconnect()
        this.provider.connect()
      }
      this._update()
    }
    this._onOffline = () => this._update()
    window.addEventListener('online', this._onOnline)
    window.addEventListener('offline', this._onOffline)

    this.readOnly = new Compartment()
    this.wrapping = new Compartment()
    this.view = new EditorView({
      parent,
      state: EditorState.create({
        doc: this.ytext.toString(),
        extensions: [
          lineNumbers(),
          highlightActiveLineGutter(),
          highlightSpecialChars(),
          drawSelection(),
          dropCursor(),
          EditorState.allowMultipleSelections.of(true),
          rectangularSelection(),
          crosshairCursor(),
          highlightActiveLine(),
          highlightSelectionMatches(),
          bracketMatching(),
          search({ top: true }),
          autocompletion({ override: [completionSource(docId)], activateOnTypingDelay: 150 }),
          keymap.of([
            ...yUndoManagerKeymap,
            ...completionKeymap,
            ...searchKeymap,
            ...defaultKeymap,
            indentWithTab
          ]),
          this.wrapping.of(wrap ? EditorView.lineWrapping : []),
          this.readOnly.of([EditorState.readOnly.of(true), EditorView.editable.of(false)]),
          EditorView.contentAttributes.of({ 'aria-label': 'Document text', spellcheck: 'false' }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged || u.selectionSet) this._update()
          }),
          yCollab(this.ytext, this.awareness, { undoManager: this.undoManager }),
          authorship ?? [],
          theme
        ]
      })
    })
    this._firstSyncTimer = setTimeout(() => { this._waited = true; this._maybeEditable() }, FIRST_SYNC_WAIT_MS)
    this._update()
  }

  /** Accepts input once the server's state is in, or the local copy is loaded and has text, or
   * the wait for the server is over (offline). Before that, typing could land in an empty
   * document that is about to fill. (Whatever arrives later merges: it is a CRDT.) */
  _maybeEditable () {
    if (this.editable || this._destroyed || this.readOnlyAccess) return
    const server = this.provider.synced
    const local = this._localLoaded && (this.ytext.length > 0 || this._waited)
    if (!server && !local) return
    this.editable = true
    this.view.dispatch({ effects: this.readOnly.reconfigure([]) })
    this.editableAt = this.timings.editable = performance.now()
    this._update()
  }

  _connectionFailed () {
    this._failedSinceSync = true
    this._update()
    // A deleted document's socket is refused before it opens (HTTP 404, no close code): ask
    // the REST API, at most every 5 s, whether that is why.
    const now = Date.now()
    if (this.closedReason || now - (this._lastCheck ?? 0) < 5000) return
    this._lastCheck = now
    api.getDocument(this.docId).catch((err) => {
      // Only the API's own 404 (a problem+json body) means the document is gone.
      if (err?.status === 404 && err.problem && !this._destroyed) this.close(err.message)
    })
  }

  /** Stops syncing for good (the document is gone, or access ended); the text stays readable. */
  close (reason, { keepLocal = false } = {}) {
    if (this.closedReason) return
    this.closedReason = reason
    this.provider.disconnect()
    // A deleted document's offline copy has nothing left to merge into.
    if (!keepLocal) this.local.clearData().catch(() => {})
    if (this.editable) this.view.dispatch({ effects: this.readOnly.reconfigure(EditorState.readOnly.of(true)) })
    this._update()
  }

  /** 'connecting' (never synced yet), 'synced', 'offline' (socket lost or browser offline),
   * or 'closed' (the server refused the document for good). */
  computeState () {
    if (this.closedReason) return 'closed'
    if (!navigator.onLine) return 'offline'
    if (this.provider.wsconnected && this.provider.synced) return 'synced'
    return this._failedSinceSync ? 'offline' : 'connecting'
  }

  _update () {
    if (this._destroyed) return
    this.state = this.computeState()
    this.onChange(this)
  }

  setUser ({ name, color }) {
    // y-codemirror.next redraws a remote caret only when its colour changes: a rename flips an
    // invisible alpha suffix so every peer redraws the label with the new name.
    this._renames = (this._renames ?? 0) + 1
    const shown = this._renames % 2 ? color : color + 'ff'
    this.awareness.setLocalStateField('user', { name, color: shown, colorLight: color + '33' })
  }

  /** Everyone with this document open, this tab first. */
  people () {
    const me = this.ydoc.clientID
    const out = []
    for (const [clientId, state] of this.awareness.getStates()) {
      if (!state?.user) continue
      out.push({
        clientId,
        self: clientId === me,
        name: String(state.user.name || 'Anonymous'),
        color: String(state.user.color || '#888').slice(0, 7)
      })
    }
    return out.sort((a, b) => (b.self - a.self) || a.name.localeCompare(b.name))
  }

  /** Length in Unicode code points (as the REST API counts); computed once per text. */
  length () {
    const doc = this.view.state.doc
    if (this._lengthOf === doc) return this._length
    let n = 0
    for (const chunk of doc.iter()) {
      n += chunk.length
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk.charCodeAt(i)
        if (c >= 0xdc00 && c <= 0xdfff) n--
      }
    }
    this._lengthOf = doc
    this._length = n
    return n
  }

  text () {
    return this.ytext.toString()
  }

  openSearch () {
    openSearchPanel(this.view)
  }

  setWrap (wrap) {
    this.view.dispatch({ effects: this.wrapping.reconfigure(wrap ? EditorView.lineWrapping : []) })
  }

  destroy () {
    this._destroyed = true
    clearTimeout(this._firstSyncTimer)
    window.removeEventListener('online', this._onOnline)
    window.removeEventListener('offline', this._onOffline)
    this.provider.destroy()
    this.view.destroy()
    this.local.destroy()
    this.ydoc.destroy()
  }
}

/** A read-only CodeMirror showing the text as of a version. */
export function versionViewer (parent, text) {
  return new EditorView({
    parent,
    state: EditorState.create({
      doc: text,
      extensions: [
        lineNumbers(),
        highlightSpecialChars(),
        drawSelection(),
        EditorView.lineWrapping,
        EditorState.readOnly.of(true),
        search({ top: true }),
        keymap.of([...searchKeymap, ...defaultKeymap]),
        theme
      ]
    })
  })
}

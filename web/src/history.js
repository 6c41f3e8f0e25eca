// The history panel: the op log from the REST history, newest first. Picking a version shows the
// text as of that version (read-only, in place of the live editor); Older/Newer step through
// versions; Restore makes it the current text again with new edits (history is kept).

import { h, clear, relativeTime, fullTime, toast } from './dom.js'
import { api } from './api.js'
import { versionViewer } from './session.js'

const PAGE = 50

/** The op log's `origin` in words. */
function describeOrigin (origin) {
  if (origin.startsWith('conn-')) return 'typed in an editor'
  return {
    'rest:create': 'created',
    'rest:edits': 'edited through the API',
    'rest:text': 'text replaced through the API',
    'rest:restore': 'restored an older version',
    'rest:update': 'Yjs update imported'
  }[origin] ?? origin
}

export class HistoryPanel {
  constructor ({ aside, docId, banner, versionEl, editorEl, onMode, onLive = () => {} }) {
    this.aside = aside
    this.docId = docId
    this.banner = banner
    this.versionEl = versionEl
    this.editorEl = editorEl
    this.onMode = onMode
    this.onLive = onLive
    this.entries = []
    this.next = null
    this.selected = -1
    this.viewer = null
    this.loading = false
    this.requestId = 0

    this.list = h('ol', { class: 'versions' })
    this.more = h('button', { class: 'btn ghost small', hidden: true, onclick: () => this.load(false) }, 'Load older versions')
    this.note = h('p', { class: 'side-note' })
    aside.append(
      h('div', { class: 'side-head' },
        h('h2', {}, 'History'),
        h('button', { class: 'btn ghost small', title: 'Refresh', onclick: () => this.load(true) }, 'Refresh'),
        h('button', { class: 'icon-btn', title: 'Close history', 'aria-label': 'Close history', onclick: () => this.close() }, '×')),
      this.note,
      this.list,
      this.more)
  }

  open () {
    this.aside.hidden = false
    this.load(true)
  }

  /** The document changed: refresh the list a little later, unless a version is on show. */
  changed () {
    if (this.aside.hidden || this.selected !== -1 || this._refreshTimer) return
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null
      if (!this.aside.hidden && this.selected === -1) this.load(true)
    }, 1500)
  }

  close () {
    this.live()
    this.aside.hidden = true
    document.querySelector('.topbar [aria-pressed]')?.setAttribute('aria-pressed', 'false')
  }

  async load (fresh) {
    if (this.loading) return
    this.loading = true
    try {
      const before = fresh ? undefined : this.next
      const page = await api.history(this.docId, { limit: PAGE, before })
      const selectedSeq = this.entries[this.selected]?.seq
      if (fresh) this.entries = []
      this.entries.push(...page.items)
      if (this.selected !== -1) this.selected = this.entries.findIndex((e) => e.seq === selectedSeq)
      this.next = page.next ?? (page.items.length === PAGE ? page.items[page.items.length - 1]?.seq : null)
      this.note.textContent = this.entries.length
        ? 'Every change, newest first. Pick one to see the text as it was then.'
        : 'No changes yet.'
    } catch (err) {
      this.note.textContent = `History is not available: ${err.message}`
    } finally {
      this.loading = false
    }
    this.renderList()
  }

  renderList () {
    clear(this.list)
    this.list.append(h('li', {},
      h('button', {
        class: 'version live' + (this.selected === -1 ? ' selected' : ''),
        onclick: () => this.live()
      }, h('span', { class: 'v-seq' }, 'Now'), h('span', { class: 'v-time' }, 'live document'))))
    this.entries.forEach((e, i) => {
      this.list.append(h('li', {},
        h('button', {
          class: 'version' + (i === this.selected ? ' selected' : ''),
          dataset: { seq: e.seq },
          title: fullTime(e.time),
          onclick: () => this.select(i)
        },
        h('span', { class: 'v-seq' }, `#${e.seq}`),
        h('span', { class: 'v-time' }, relativeTime(e.time)),
        h('span', { class: 'v-delta' },
          e.inserted ? h('span', { class: 'ins' }, `+${e.inserted}`) : null,
          e.deleted ? h('span', { class: 'del' }, `−${e.deleted}`) : null),
        e.origin ? h('span', { class: 'v-origin', title: String(e.origin) }, describeOrigin(String(e.origin))) : null)))
    })
    this.more.hidden = !this.next
  }

  async select (index) {
    if (index >= this.entries.length && this.next) await this.load(false)
    if (index < 0) return this.live()
    if (index >= this.entries.length) return
    const entry = this.entries[index]
    const req = ++this.requestId
    let text
    try {
      text = await api.text(this.docId, entry.seq)
    } catch (err) {
      toast(`Cannot show version #${entry.seq}: ${err.message}`, 'error')
      return
    }
    if (req !== this.requestId) return
    this.selected = index
    if (!this.viewer) {
      this.viewer = versionViewer(this.versionEl, text)
    } else {
      this.viewer.dispatch({ changes: { from: 0, to: this.viewer.state.doc.length, insert: text } })
    }
    this.versionEl.hidden = false
    this.editorEl.hidden = true
    this.onMode(true)
    this.renderBanner(entry, index)
    this.renderList()
    this.list.querySelector('.selected')?.scrollIntoView({ block: 'nearest' })
  }

  renderBanner (entry, index) {
    const b = this.banner
    b.hidden = false
    b.className = 'banner viewing'
    clear(b)
    b.append(
      h('span', { class: 'banner-text' },
        h('strong', {}, `Version #${entry.seq}`), ` · ${relativeTime(entry.time)} · read-only`),
      h('span', { class: 'spacer' }),
      h('button', {
        class: 'btn ghost small',
        disabled: index + 1 >= this.entries.length && !this.next,
        onclick: () => this.select(index + 1)
      }, '◀ Older'),
      h('button', { class: 'btn ghost small', onclick: () => this.select(index - 1) }, index === 0 ? 'Now ▶' : 'Newer ▶'),
      h('button', { class: 'btn primary small', onclick: () => this.restore(entry) }, 'Restore this version'),
      h('button', { class: 'btn ghost small', onclick: () => this.live() }, 'Back to live'))
  }

  async restore (entry) {
    try {
      await api.restore(this.docId, entry.seq)
      toast(`Restored version #${entry.seq}; the change is in the history too`)
      this.live()
      await this.load(true)
    } catch (err) {
      toast(`Restore failed: ${err.message}`, 'error')
    }
  }

  /** Back to the live editor. */
  live () {
    this.requestId++
    const wasVersion = this.selected !== -1
    this.selected = -1
    this.versionEl.hidden = true
    this.editorEl.hidden = false
    if (wasVersion) {
      this.banner.hidden = true
      this.onMode(false)
      this.renderList()
      this.onLive()
    }
  }

  destroy () {
    clearTimeout(this._refreshTimer)
    this.viewer?.destroy()
  }
}

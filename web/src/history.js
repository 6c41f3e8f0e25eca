// The history panel: named versions, then changes (the op log grouped by author and time, from
// the REST history), newest first, each with its author's colour, what it inserted and deleted.
// Picking one shows the text as of that version (read-only, in place of the live editor);
// Older/Newer step through changes and the slider scrubs through every version; Restore makes
// it the current text again with new edits (history is kept); a version can be given a name.

import { h, clear, relativeTime, fullTime, toast } from './dom.js'
import { api } from './api.js'
import { versionViewer } from './session.js'

const PAGE = 30

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

    this.named = []
    this.scrubbed = null
    this.slider = h('input', {
      type: 'range', class: 'time-slider', min: '0', max: '0', value: '0',
      'aria-label': 'Scrub through versions',
      oninput: () => this.scrub(Number(this.slider.value))
    })
    this.sliderLabel = h('span', { class: 'slider-label' })
    this.nameInput = h('input', { class: 'version-name', placeholder: 'Name this version…', 'aria-label': 'Version name', maxlength: '100' })
    this.list = h('ol', { class: 'versions' })
    this.more = h('button', { class: 'btn ghost small', hidden: true, onclick: () => this.load(false) }, 'Load older versions')
    this.note = h('p', { class: 'side-note' })
    aside.append(
      h('div', { class: 'side-head' },
        h('h2', {}, 'History'),
        h('button', { class: 'btn ghost small', title: 'Refresh', onclick: () => this.load(true) }, 'Refresh'),
        h('button', { class: 'icon-btn', title: 'Close history', 'aria-label': 'Close history', onclick: () => this.close() }, '×')),
      this.note,
      h('div', { class: 'slider-row' }, this.slider, this.sliderLabel),
      h('form', {
        class: 'name-form',
        onsubmit: (e) => { e.preventDefault(); this.nameVersion() }
      }, this.nameInput, h('button', { class: 'btn ghost small', type: 'submit' }, 'Name')),
      this.list,
      this.more)
  }

  open () {
    this.aside.hidden = false
    this.load(true)
  }

  /** The document changed: refresh the list a little later, unless a version is on show. */
  changed () {
    if (this.aside.hidden || !this.versionEl.hidden || this._refreshTimer) return
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null
      if (!this.aside.hidden && this.versionEl.hidden) this.load(true)
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
      const [page, named] = await Promise.all([
        api.changes(this.docId, { limit: PAGE, before }),
        fresh ? api.namedVersions(this.docId) : Promise.resolve(this.named)
      ])
      const selectedSeq = this.entries[this.selected]?.seq
      if (fresh) this.entries = []
      this.named = named
      this.entries.push(...page.items.map((c) => ({ ...c, seq: c.last_version, time: c.ended })))
      if (this.selected !== -1) this.selected = this.entries.findIndex((e) => e.seq === selectedSeq)
      this.next = page.next
      if (fresh) {
        const newest = this.entries[0]?.seq ?? 0
        this.slider.max = String(newest)
        if (this.selected === -1 && this.scrubbed == null) this.slider.value = String(newest)
      }
      this.sliderLabel.textContent = this.scrubbed != null ? `#${this.scrubbed}` : 'now'
      this.note.textContent = this.entries.length
        ? 'Changes, newest first, by author. Pick one, or drag the slider, to see the text as it was then.'
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
    for (const v of this.named) {
      this.list.append(h('li', {},
        h('button', {
          class: 'version named',
          dataset: { named: v.name },
          title: `${v.name}: version #${v.version}, named ${fullTime(v.created)}`,
          onclick: () => this.showVersion(v.version, v.name)
        },
        h('span', { class: 'v-seq' }, `#${v.version}`),
        h('span', { class: 'v-name' }, v.name),
        h('span', { class: 'v-origin' }, v.author ? `named by ${v.author}` : 'named version'))))
    }
    this.entries.forEach((e, i) => {
      const range = e.first_version === e.last_version ? `#${e.seq}` : `#${e.first_version}–${e.last_version}`
      this.list.append(h('li', {},
        h('button', {
          class: 'version' + (i === this.selected ? ' selected' : ''),
          dataset: { seq: e.seq },
          title: `${fullTime(e.started)} – ${fullTime(e.ended)} · ${e.rows} ${e.rows === 1 ? 'edit' : 'edits'}`,
          onclick: () => this.select(i)
        },
        h('span', { class: 'v-seq' }, range),
        h('span', { class: 'v-time' }, relativeTime(e.time)),
        h('span', { class: 'v-delta' },
          e.inserted ? h('span', { class: 'ins' }, `+${e.inserted}`) : null,
          e.deleted ? h('span', { class: 'del' }, `−${e.deleted}`) : null),
        h('span', { class: 'v-author' },
          h('span', { class: 'dot', style: `background:${e.color || 'var(--muted)'}` }),
          e.author ?? (e.origin ? describeOrigin(String(e.origin)) : 'unknown')),
        e.preview && (e.preview.inserted || e.preview.deleted)
          ? h('span', { class: 'v-preview' },
            e.preview.inserted ? h('ins', {}, e.preview.inserted) : null,
            e.preview.deleted ? h('del', {}, e.preview.deleted) : null)
          : null)))
    })
    this.more.hidden = !this.next
  }

  async select (index) {
    if (index >= this.entries.length && this.next) await this.load(false)
    if (index < 0) return this.live()
    if (index >= this.entries.length) return
    const entry = this.entries[index]
    const text = await this.fetchText(entry.seq)
    if (text == null) return
    this.scrubbed = null
    this.slider.value = String(entry.seq)
    this.sliderLabel.textContent = `#${entry.seq}`
    this.selected = index
    this.show(text)
    this.renderBanner(entry, index)
    this.renderList()
    this.list.querySelector('.selected')?.scrollIntoView({ block: 'nearest' })
  }

  /** The text at `version`, or null when a newer request overtook this one or it failed. */
  async fetchText (version) {
    const req = ++this.requestId
    let text
    try {
      text = await api.text(this.docId, version)
    } catch (err) {
      toast(`Cannot show version #${version}: ${err.message}`, 'error')
      return null
    }
    return req === this.requestId ? text : null
  }

  /** Shows `text` in the read-only viewer in place of the live editor. */
  show (text) {
    if (!this.viewer) {
      this.viewer = versionViewer(this.versionEl, text)
    } else {
      this.viewer.dispatch({ changes: { from: 0, to: this.viewer.state.doc.length, insert: text } })
    }
    this.versionEl.hidden = false
    this.editorEl.hidden = true
    this.onMode(true)
  }

  /** Any version by number (the slider, named versions); `label` names it in the banner. */
  async showVersion (version, label = null) {
    const text = await this.fetchText(version)
    if (text == null) return
    this.scrubbed = version
    this.selected = this.entries.findIndex((e) => e.seq === version)
    this.slider.value = String(version)
    this.sliderLabel.textContent = `#${version}`
    this.show(text)
    this.renderBanner(this.entries[this.selected] ?? { seq: version, time: null }, this.selected, label)
    this.renderList()
  }

  /** The slider moved: show that version, one request in flight at a time, the latest wins. */
  scrub (version) {
    this.sliderLabel.textContent = `#${version}`
    this.pendingScrub = version
    if (this.scrubbing) return
    this.scrubbing = (async () => {
      while (this.pendingScrub != null) {
        const v = this.pendingScrub
        this.pendingScrub = null
        await this.showVersion(v)
      }
      this.scrubbing = null
    })()
  }

  /** Names the version on show (or the current one when the live document is). */
  async nameVersion () {
    const name = this.nameInput.value.trim()
    if (!name) return
    const version = this.versionEl.hidden ? undefined : (this.scrubbed ?? this.entries[this.selected]?.seq)
    try {
      const named = await api.nameVersion(this.docId, name, version)
      this.nameInput.value = ''
      toast(`Version #${named.version} is named “${named.name}”`)
      this.named = await api.namedVersions(this.docId)
      this.renderList()
    } catch (err) {
      toast(`Cannot name the version: ${err.message}`, 'error')
    }
  }

  renderBanner (entry, index, label = null) {
    const b = this.banner
    b.hidden = false
    b.className = 'banner viewing'
    clear(b)
    b.append(
      h('span', { class: 'banner-text' },
        h('strong', {}, label ? `“${label}” (version #${entry.seq})` : `Version #${entry.seq}`),
        entry.author ? ` by ${entry.author}` : '',
        entry.time ? ` · ${relativeTime(entry.time)}` : '',
        ' · read-only'),
      h('span', { class: 'spacer' }),
      h('button', {
        class: 'btn ghost small',
        disabled: index === -1 || (index + 1 >= this.entries.length && !this.next),
        onclick: () => this.select(index + 1)
      }, '◀ Older'),
      h('button', { class: 'btn ghost small', disabled: index === -1, onclick: () => this.select(index - 1) }, index === 0 ? 'Now ▶' : 'Newer ▶'),
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
    const wasVersion = !this.versionEl.hidden
    this.selected = -1
    this.scrubbed = null
    this.pendingScrub = null
    this.slider.value = this.slider.max
    this.sliderLabel.textContent = 'now'
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

// "Show authors": the text coloured by who typed it (Etherpad's authorship colours), from the
// server's blame. Spans are mapped through every later edit; what this tab types takes its
// author's colour at once, and the blame is fetched again shortly after others' edits, so the
// colours follow the typing live.

import { StateEffect, StateField, RangeSetBuilder } from '@codemirror/state'
import { Decoration, EditorView } from '@codemirror/view'
import { api } from './api.js'

const setMarks = StateEffect.define()
const REFRESH_MS = 800

/** The colour the server gives `author` (`quire_wire::author_color`): FNV-1a of the UTF-8 name → hue. */
export function colorOf (author) {
  let hash = 0x811c9dc5
  for (const b of new TextEncoder().encode(author)) {
    hash ^= b
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  const hue = hash % 360
  const s = 0.65
  const l = 0.42
  const c = (1 - Math.abs(2 * l - 1)) * s
  const x = c * (1 - Math.abs(((hue / 60) % 2) - 1))
  const m = l - c / 2
  const [r, g, b] = [[c, x, 0], [x, c, 0], [0, c, x], [0, x, c], [x, 0, c], [c, 0, x]][Math.min(5, Math.floor(hue / 60))]
  const hex = (v) => Math.min(255, Math.max(0, Math.round((v + m) * 255))).toString(16).padStart(2, '0')
  return `#${hex(r)}${hex(g)}${hex(b)}`
}

const markCache = new Map()
function mark (author) {
  const key = author ?? ''
  let m = markCache.get(key)
  if (!m) {
    const color = author ? colorOf(author) : '#888888'
    m = Decoration.mark({
      class: 'cm-author',
      attributes: { style: `background-color: ${color}2e; box-shadow: inset 0 -2px 0 ${color}66`, 'data-author': author ?? '', 'data-color': color }
    })
    markCache.set(key, m)
  }
  return m
}

/** The overlay for a tab whose person is `me()` (their name now), while `on()`. */
export function authorsOverlay (me, on) {
  return StateField.define({
    create: () => Decoration.none,
    update (marks, tr) {
      marks = marks.map(tr.changes)
      for (const e of tr.effects) if (e.is(setMarks)) marks = e.value
      // This tab's own typing is its person's at once.
      if (on() && tr.docChanged && (tr.isUserEvent('input') || tr.isUserEvent('paste') || tr.isUserEvent('move'))) {
        const added = []
        tr.changes.iterChangedRanges((_fa, _ta, from, to) => { if (to > from) added.push(mark(me()).range(from, to)) })
        if (added.length) marks = marks.update({ add: added, sort: true })
      }
      return marks
    },
    provide: (f) => EditorView.decorations.from(f)
  })
}

/** Blame spans (char positions) as marks on `text` (UTF-16 positions). */
function marksOf (spans, text) {
  const builder = new RangeSetBuilder()
  let cp = 0
  let utf16 = 0
  const advance = (to) => {
    while (cp < to && utf16 < text.length) {
      const c = text.codePointAt(utf16)
      utf16 += c > 0xffff ? 2 : 1
      cp++
    }
  }
  for (const s of spans) {
    advance(s.start)
    const from = utf16
    advance(s.end)
    if (utf16 > from) builder.add(from, utf16, mark(s.author))
  }
  return builder.finish()
}

/** Fetches blame and shows it, while the view shows the same text the blame is of; after
 * others' edits it fetches again. Returns a function that stops it. */
export function followBlame (view, docId, { onAuthors = () => {} } = {}) {
  let timer = null
  let stopped = false
  let inFlight = false
  const refresh = async () => {
    timer = null
    if (stopped || inFlight) return
    inFlight = true
    try {
      const text = view.state.doc.toString()
      const blame = await api.blame(docId)
      if (stopped) return
      // Only a blame of exactly the text on show can be laid over it; otherwise try again.
      if (view.state.doc.toString() !== text || [...text].length !== blame.length) {
        schedule()
        return
      }
      view.dispatch({ effects: setMarks.of(marksOf(blame.spans, text)) })
      onAuthors(blame.authors)
    } catch {
      schedule(3 * REFRESH_MS)
    } finally {
      inFlight = false
    }
  }
  const schedule = (ms = REFRESH_MS) => {
    if (!stopped && !timer) timer = setTimeout(refresh, ms)
  }
  refresh()
  return {
    changed: () => schedule(),
    stop: () => {
      stopped = true
      clearTimeout(timer)
      view.dispatch({ effects: setMarks.of(Decoration.none) })
    }
  }
}

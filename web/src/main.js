// quire's browser client: the document list (/) and the editor (/d/{id}).

import './style.css'
import { h, clear, relativeTime, fullTime, toast, plural } from './dom.js'
import { api, ApiError } from './api.js'
import { getUser, setName, getWrap, setWrap, initials } from './prefs.js'
import { Session } from './session.js'
import { authorsOverlay, followBlame, colorOf } from './authors.js'
import { HistoryPanel } from './history.js'

const root = document.getElementById('app')
const DOC_PATH = /^\/d\/([A-Za-z0-9._-]{1,128})\/?$/

/** What tests and the curious can look at: `window.quire`. */
const debug = { session: null, view: null }
window.quire = debug

let teardown = () => {}

function navigate (path) {
  if (location.pathname !== path) history.pushState(null, '', path)
  route()
}

function route () {
  teardown()
  teardown = () => {}
  clear(root)
  const m = location.pathname.match(DOC_PATH)
  if (m) openEditor(m[1])
  else openList()
}

window.addEventListener('popstate', route)
document.addEventListener('click', (e) => {
  const a = e.target.closest?.('a[data-nav]')
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return
  e.preventDefault()
  navigate(a.getAttribute('href'))
})

// ---------------------------------------------------------------------------------------------
// Shared pieces

function brand () {
  return h('a', { class: 'brand', href: '/', 'data-nav': '' },
    h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, 'q'), 'quire')
}

/** The "your name" field; `onName` hears every change (already saved). */
function nameField (onName = () => {}) {
  const user = getUser()
  const avatar = h('span', { class: 'avatar small', style: `background:${user.color}`, 'aria-hidden': 'true' }, initials(user.name))
  const input = h('input', {
    class: 'name-input',
    value: user.name,
    maxlength: '40',
    placeholder: 'Your name',
    'aria-label': 'Your name',
    title: 'Your name, as others see it next to your cursor',
    oninput: () => {
      const name = input.value.trim()
      if (name) {
        setName(name)
        avatar.textContent = initials(name)
        onName(name)
      }
    }
  })
  return h('label', { class: 'you' }, avatar, input)
}

function documentTitle (name) {
  document.title = name ? `${name} · quire` : 'quire'
}

// ---------------------------------------------------------------------------------------------
// The document list

function openList () {
  documentTitle(null)
  const tbody = h('tbody')
  const empty = h('div', { class: 'empty', hidden: true },
    h('p', {}, 'No documents yet.'),
    h('p', { class: 'muted' }, 'Create one above, then share its address: everyone who opens it edits the same text live.'))
  const more = h('button', { class: 'btn ghost more', hidden: true, onclick: () => load(false) }, 'Load more')
  const nameInput = h('input', { name: 'name', placeholder: 'Name of a new document', maxlength: '200', 'aria-label': 'New document name' })
  const error = h('div', { class: 'load-error', hidden: true })
  let cursor = null
  let alive = true

  const form = h('form', {
    class: 'new-doc',
    onsubmit: async (e) => {
      e.preventDefault()
      const name = nameInput.value.trim() || 'Untitled'
      try {
        const doc = await api.createDocument({ name })
        navigate(`/d/${doc.id}`)
      } catch (err) {
        toast(`Could not create the document: ${err.message}`, 'error')
      }
    }
  }, nameInput, h('button', { class: 'btn primary', type: 'submit' }, 'New document'))

  root.append(
    h('header', { class: 'topbar' }, brand(), h('span', { class: 'spacer' }), nameField()),
    h('main', { class: 'list-page' },
      h('div', { class: 'list-head' }, h('h1', {}, 'Documents'), form),
      error,
      h('table', { class: 'docs' },
        h('thead', {}, h('tr', {},
          h('th', { class: 'col-name' }, 'Name'),
          h('th', { class: 'col-length' }, 'Length'),
          h('th', { class: 'col-updated' }, 'Last edit'),
          h('th', { class: 'col-actions' }, h('span', { class: 'sr-only' }, 'Actions')))),
        tbody),
      empty,
      more))

  function row (doc) {
    const tr = h('tr', { dataset: { id: doc.id } })
    const nameCell = h('td', { class: 'col-name' })
    const showName = () => {
      clear(nameCell)
      nameCell.append(h('a', { href: `/d/${doc.id}`, 'data-nav': '', class: 'doc-link' }, doc.name || 'Untitled'),
        h('span', { class: 'doc-id' }, doc.id))
    }
    showName()
    const rename = () => {
      const input = h('input', { class: 'rename-input', value: doc.name || '', maxlength: '200', 'aria-label': 'New name' })
      const done = async (save) => {
        const name = input.value.trim()
        if (save && name && name !== doc.name) {
          try {
            const updated = await api.renameDocument(doc.id, name)
            doc.name = updated?.name ?? name
          } catch (err) {
            toast(`Rename failed: ${err.message}`, 'error')
          }
        }
        showName()
      }
      let cancelled = false
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') { e.preventDefault(); input.blur() }
        if (e.key === 'Escape') { cancelled = true; input.blur() }
      })
      input.addEventListener('blur', () => done(!cancelled), { once: true })
      clear(nameCell)
      nameCell.append(input)
      input.focus()
      input.select()
    }
    const actions = h('td', { class: 'col-actions' })
    const showActions = () => {
      clear(actions)
      actions.append(
        h('button', { class: 'btn ghost small', onclick: rename }, 'Rename'),
        h('button', { class: 'btn ghost small danger', onclick: confirmDelete }, 'Delete'))
    }
    const confirmDelete = () => {
      clear(actions)
      actions.append(
        h('span', { class: 'confirm' }, 'Delete for everyone?'),
        h('button', {
          class: 'btn small danger solid',
          onclick: async () => {
            try {
              await api.deleteDocument(doc.id)
              forgetLocalCopy(doc.id)
              tr.remove()
              if (!tbody.children.length) empty.hidden = false
              toast(`Deleted “${doc.name || doc.id}”`)
            } catch (err) {
              toast(`Delete failed: ${err.message}`, 'error')
              showActions()
            }
          }
        }, 'Delete'),
        h('button', { class: 'btn ghost small', onclick: showActions }, 'Cancel'))
    }
    showActions()
    tr.append(
      nameCell,
      h('td', { class: 'col-length' }, plural(doc.length ?? 0, 'char')),
      h('td', { class: 'col-updated', title: fullTime(doc.updated) }, relativeTime(doc.updated)),
      actions)
    return tr
  }

  async function load (fresh) {
    if (fresh) cursor = null
    try {
      const page = await api.listDocuments({ limit: 50, cursor })
      if (!alive) return
      if (fresh) clear(tbody)
      for (const doc of page.items) tbody.append(row(doc))
      cursor = page.next
      more.hidden = !cursor
      empty.hidden = tbody.children.length > 0
      error.hidden = true
    } catch (err) {
      if (!alive) return
      error.hidden = false
      error.textContent = err instanceof ApiError && err.status === 0
        ? 'The server cannot be reached. Documents you opened before still open from this device.'
        : `Could not load the documents: ${err.message}`
    }
  }

  load(true)
  const onFocus = () => load(true)
  window.addEventListener('focus', onFocus)
  teardown = () => {
    alive = false
    window.removeEventListener('focus', onFocus)
  }
  nameInput.focus()
}

/** Removes this browser's offline copy of a deleted document (y-indexeddb's database). */
function forgetLocalCopy (id) {
  try { indexedDB.deleteDatabase(`quire:${id}`) } catch {}
}

// ---------------------------------------------------------------------------------------------
// The editor

const STATES = {
  connecting: ['Connecting…', 'Connecting to the server'],
  synced: ['Synced', 'Every change is on the server'],
  offline: ['Offline', 'Not connected: your edits are kept on this device and merge when the connection returns'],
  closed: ['Disconnected', '']
}

function openEditor (id) {
  const user = getUser()
  let docName = id
  documentTitle(docName)

  const title = h('button', { class: 'doc-title', title: 'Rename this document' }, id)
  const status = h('span', { class: 'status', dataset: { state: 'connecting' }, role: 'status' },
    h('span', { class: 'dot' }), h('span', { class: 'status-text' }, 'Connecting…'))
  const presence = h('div', { class: 'presence', 'aria-label': 'Who is here' })
  const historyBtn = h('button', { class: 'btn ghost', 'aria-pressed': 'false', dataset: { action: 'history' } }, 'History')
  const findBtn = h('button', { class: 'btn ghost', title: 'Find and replace (Ctrl+F)', dataset: { action: 'find' } }, 'Find')
  const authorsBtn = h('button', { class: 'btn ghost', 'aria-pressed': 'false', title: 'Colour the text by who typed it', dataset: { action: 'authors' } }, 'Authors')
  const legend = h('span', { class: 'authors-legend', hidden: true })
  let myName = user.name
  let authorsOn = false
  let following = null
  const banner = h('div', { class: 'banner', hidden: true })
  const editorEl = h('div', { class: 'editor' })
  const versionEl = h('div', { class: 'version-view', hidden: true })
  const aside = h('aside', { class: 'side', hidden: true })
  const position = h('span', {})
  const counts = h('span', {})
  const wrapToggle = h('input', { type: 'checkbox', checked: getWrap() })

  root.append(
    h('header', { class: 'topbar' },
      brand(),
      h('a', { class: 'back', href: '/', 'data-nav': '' }, 'Documents'),
      h('span', { class: 'crumb-sep' }, '/'),
      title,
      status,
      h('span', { class: 'spacer' }),
      presence,
      nameField((name) => { myName = name; session.setUser({ name, color: user.color }) }),
      findBtn,
      authorsBtn,
      historyBtn),
    h('div', { class: 'workspace' },
      h('div', { class: 'editor-column' }, banner, editorEl, versionEl),
      aside),
    h('footer', { class: 'statusbar' },
      position, counts, legend, h('span', { class: 'spacer' }),
      h('label', { class: 'wrap-toggle' }, wrapToggle, 'Wrap lines')))

  // Redraws at most once a frame; declared before the session, whose constructor reports.
  let scheduled = false
  let versionMode = false
  const session = new Session({
    parent: editorEl,
    docId: id,
    user,
    wrap: getWrap(),
    onChange: () => schedule(),
    authorship: authorsOverlay(() => myName, () => authorsOn)
  })
  debug.session = session
  debug.view = session.view

  wrapToggle.addEventListener('change', () => {
    setWrap(wrapToggle.checked)
    session.setWrap(wrapToggle.checked)
  })
  findBtn.addEventListener('click', () => session.openSearch())
  // Ctrl/Cmd+F finds in the document wherever the focus is on this page.
  const onKey = (e) => {
    if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === 'f' && !session.view.hasFocus) {
      e.preventDefault()
      session.openSearch()
    }
  }
  document.addEventListener('keydown', onKey)

  function schedule () {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(render)
  }
  let lastPeople = ''
  function render () {
    scheduled = false
    const state = session.state
    status.dataset.state = state
    const [label, tip] = STATES[state]
    const ro = session.readOnlyAccess && state !== 'closed'
    status.querySelector('.status-text').textContent = ro ? `${label} · Read-only` : label
    status.title = state === 'closed' ? session.closedReason : ro ? `${tip}. Your access is read-only: you can watch, not edit.` : tip
    status.dataset.readonly = ro ? 'true' : 'false'
    if (state === 'closed') {
      banner.hidden = false
      banner.className = 'banner closed'
      clear(banner)
      banner.append(`This document is no longer available: ${session.closedReason}. `,
        h('a', { href: '/', 'data-nav': '' }, 'Back to the documents'))
    } else if (state === 'offline' && !versionMode) {
      banner.hidden = false
      banner.className = 'banner offline'
      banner.textContent = 'You are offline. Keep typing: your edits are saved on this device and merge as soon as the connection returns.'
    } else if (!versionMode) {
      banner.hidden = true
    }

    const people = session.people()
    const key = JSON.stringify(people)
    if (key !== lastPeople) {
      lastPeople = key
      clear(presence)
      const shown = people.slice(0, 6)
      for (const p of shown) {
        presence.append(h('span', {
          class: 'avatar' + (p.self ? ' self' : ''),
          style: `background:${p.color}`,
          title: p.self ? `${p.name} (you)` : p.name,
          dataset: { name: p.name }
        }, initials(p.name)))
      }
      if (people.length > shown.length) presence.append(h('span', { class: 'avatar more' }, `+${people.length - shown.length}`))
      presence.append(h('span', { class: 'presence-count' }, people.length === 1 ? 'Only you' : `${people.length} here`))
      presence.title = people.map((p) => (p.self ? `${p.name} (you)` : p.name)).join(', ')
    }

    const st = session.view.state
    const head = st.selection.main.head
    const line = st.doc.lineAt(head)
    position.textContent = `Ln ${line.number}, Col ${head - line.from + 1}`
    counts.textContent = `${plural(session.length(), 'char')} · ${plural(st.doc.lines, 'line')}`
  }

  // The name, and renaming from the title.
  api.getDocument(id).then((doc) => {
    docName = doc?.name || id
    title.textContent = docName
    documentTitle(docName)
  }, (err) => {
    if (err instanceof ApiError && err.status === 404) {
      title.textContent = id
    }
  })
  title.addEventListener('click', () => {
    const input = h('input', { class: 'title-input', value: docName, maxlength: '200', 'aria-label': 'Document name' })
    const done = async (save) => {
      const name = input.value.trim()
      if (save && name && name !== docName) {
        try {
          const doc = await api.renameDocument(id, name)
          docName = doc?.name ?? name
          documentTitle(docName)
        } catch (err) {
          toast(`Rename failed: ${err.message}`, 'error')
        }
      }
      title.textContent = docName
      input.replaceWith(title)
    }
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); input.blur() }
      if (e.key === 'Escape') { input.value = docName; input.blur() }
    })
    input.addEventListener('blur', () => done(true), { once: true })
    title.replaceWith(input)
    input.focus()
    input.select()
  })

  // History: a side panel listing versions; picking one shows its text instead of the editor.
  const historyPanel = new HistoryPanel({
    aside,
    docId: id,
    banner,
    versionEl,
    editorEl,
    onMode: (on) => {
      versionMode = on
      schedule()
    },
    onLive: () => session.view.focus()
  })
  session.ydoc.on('update', (_update, origin) => {
    historyPanel.changed()
    // Others' edits: fetch the blame again (this tab's own typing is coloured at once).
    if (following && origin !== session.local) following.changed()
  })
  authorsBtn.addEventListener('click', () => {
    authorsOn = !authorsOn
    authorsBtn.setAttribute('aria-pressed', String(authorsOn))
    if (authorsOn) {
      following = followBlame(session.view, id, {
        onAuthors: (authors) => {
          clear(legend)
          legend.hidden = false
          for (const a of authors.slice(0, 6)) {
            legend.append(h('span', { class: 'legend-item', title: `${a.chars} chars` },
              h('span', { class: 'dot', style: `background:${a.name ? colorOf(a.name) : '#888888'}` }), a.name ?? 'unknown'))
          }
        }
      })
    } else {
      following?.stop()
      following = null
      legend.hidden = true
    }
  })
  historyBtn.addEventListener('click', () => {
    const open = aside.hidden
    historyBtn.setAttribute('aria-pressed', String(open))
    if (open) historyPanel.open()
    else historyPanel.close()
  })

  // Focus the editor as soon as it accepts input.
  const focusWhenReady = () => {
    if (session._destroyed) return
    if (session.editable) {
      session.view.focus()
      return
    }
    setTimeout(focusWhenReady, 16)
  }
  focusWhenReady()

  teardown = () => {
    document.removeEventListener('keydown', onKey)
    historyPanel.destroy()
    following?.stop()
    session.destroy()
    debug.session = null
    debug.view = null
  }
}

route()

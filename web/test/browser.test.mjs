// The browser editor in real (headless Debian) Chromium against a real quire-server: two people
// editing at once, reload and restart, REST edits appearing live, offline editing, non-BMP
// text both ways, the document list, history, search and replace, autocomplete, load time.
//
// Each test starts its own quire-server on a fresh SQLite file; one Chromium serves them all,
// each person in a browser context of their own (own localStorage and IndexedDB).

import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, rm } from 'node:fs/promises'
import path from 'node:path'
import os from 'node:os'
import {
  Server, launchBrowser, person, newPage, openDocument, waitState, pageText, editorText,
  waitPageText, placeCursor, closeAll, assertNoErrors, until, sleep, repoRoot
} from './harness.mjs'

const TEST_TIMEOUT = 60_000
/** Console noise that an offline or deleted document makes on purpose. */
const SOCKET_ERRORS = [/WebSocket connection to .* failed/, /Failed to load resource/]

let browser

before(async () => {
  browser = await launchBrowser()
})

after(async () => {
  await browser?.close()
})

/** Runs `body(server)` with a server of its own; keeps the server's files if it fails. */
async function withServer (label, body, options) {
  const server = await Server.start(label, options)
  let failed = true
  try {
    await body(server)
    failed = false
  } finally {
    await server.dispose(failed)
  }
}

const ALICE = { name: 'Alice', color: '#e5484d' }
const BOB = { name: 'Bob', color: '#0b84e0' }

const CHECKLIST = [
  '# Launch checklist',
  '',
  '## Server',
  '- [x] Sync server: the Yjs protocol over WebSocket',
  '- [x] Every edit in the op log before anyone sees it',
  '- [x] REST API with history and restore',
  '',
  '## Browser',
  '- [ ] Editor with live cursors and names',
  '- [ ] Offline edits that merge on reconnect',
  '- [ ] Search, replace and autocomplete',
  '',
  '## Notes',
  'Release candidate on Thursday; docs freeze on Wednesday.',
  'Ask Carol to try it on a slow network.',
  ''
].join('\n')

describe('the browser editor', { timeout: 150_000 }, () => {
  it('two people edit one document at once, converge, and see each other\'s cursor and name', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('two', async (server) => {
      const doc = await server.createDocument('Launch checklist', CHECKLIST)
      const alice = await person(browser, server, ALICE)
      const bob = await person(browser, server, BOB)
      try {
        await Promise.all([openDocument(alice, doc.id), openDocument(bob, doc.id)])
        assert.equal(await pageText(alice.page), CHECKLIST)

        // Both type at the same time, in different places.
        const notes = CHECKLIST.length
        await placeCursor(alice.page, notes)
        const bobAt = CHECKLIST.indexOf('- [ ] Editor') + '- [ ] Editor'.length
        await placeCursor(bob.page, bobAt)
        await Promise.all([
          alice.page.keyboard.type('Ship it on Friday. '),
          bob.page.keyboard.type(' (CodeMirror 6)')
        ])
        const expected = CHECKLIST.slice(0, bobAt) + ' (CodeMirror 6)' + CHECKLIST.slice(bobAt) + 'Ship it on Friday. '
        await waitPageText(alice.page, expected)
        await waitPageText(bob.page, expected)
        assert.equal(await editorText(alice.page), expected)
        assert.equal(await editorText(bob.page), expected)
        await until('the server has both edits', async () => (await server.text(doc.id)) === expected)

        // Each sees the other's caret, labelled with their name, and both in "who is here".
        const caretName = (page) => page.locator('.cm-ySelectionCaret .cm-ySelectionInfo')
        await until('Alice sees Bob\'s caret', async () => (await caretName(alice.page).allTextContents()).includes('Bob'))
        await until('Bob sees Alice\'s caret', async () => (await caretName(bob.page).allTextContents()).includes('Alice'))
        for (const [p, other] of [[alice, 'Bob'], [bob, 'Alice']]) {
          await p.page.locator(`.presence .avatar[data-name="${other}"]`).waitFor({ timeout: 5000 })
          assert.equal(await p.page.locator('.presence-count').textContent(), '2 here')
          assert.equal(await p.page.locator('.status').getAttribute('data-state'), 'synced')
        }

        // A selection shows too; then the screenshot for the README.
        const word = expected.indexOf('merge')
        await bob.page.evaluate(([a, h]) => window.quire.view.dispatch({ selection: { anchor: a, head: h } }), [word, word + 'merge on reconnect'.length])
        await until('Alice sees Bob\'s selection', async () => (await alice.page.locator('.cm-ySelection').count()) > 0)
        await alice.page.keyboard.type('Bob reviews the merge')
        await waitPageText(bob.page, (t) => t.endsWith('Bob reviews the merge'))
        await sleep(200)
        // README's picture is rewritten only on request (QUIRE_UPDATE_SCREENSHOT=1), so a test
        // run leaves the checkout as it was.
        const file = process.env.QUIRE_UPDATE_SCREENSHOT === '1'
          ? path.join(repoRoot, 'docs', 'screenshot.png')
          : path.join(os.tmpdir(), `quire-screenshot-${process.pid}.png`)
        await mkdir(path.dirname(file), { recursive: true })
        await alice.page.screenshot({ path: file, animations: 'disabled' })
        if (process.env.QUIRE_UPDATE_SCREENSHOT !== '1') await rm(file)

        // Bob renames himself: Alice's view of his caret and avatar follows, and Bob's browser
        // remembers the name.
        await bob.page.locator('.name-input').fill('Robert')
        await until('Alice sees Robert\'s caret', async () => (await caretName(alice.page).allTextContents()).includes('Robert'))
        await alice.page.locator('.presence .avatar[data-name="Robert"]').waitFor({ timeout: 5000 })
        await bob.page.reload()
        await openDocument(bob, doc.id)
        assert.equal(await bob.page.locator('.name-input').inputValue(), 'Robert')

        assertNoErrors(alice)
        assertNoErrors(bob)
      } finally {
        await closeAll(alice, bob)
      }
    })
  })

  it('a reload shows the persisted text, also after a server restart; a REST edit appears in the open page', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('persist', async (server) => {
      const doc = await server.createDocument('Persisted', '')
      const alice = await person(browser, server, ALICE)
      let carol
      try {
        await openDocument(alice, doc.id)
        await alice.page.keyboard.type('first line\nsecond line ✓')
        const typed = 'first line\nsecond line ✓'
        await until('the server has the typed text', async () => (await server.text(doc.id)) === typed)

        await alice.page.reload()
        await openDocument(alice, doc.id)
        assert.equal(await editorText(alice.page), typed)

        // The server is stopped (it flushes) and started again; someone with no local copy
        // (a fresh browser context: empty IndexedDB) gets the text from the server.
        await server.restart()
        carol = await person(browser, server, { name: 'Carol' })
        await openDocument(carol, doc.id)
        assert.equal(await editorText(carol.page), typed)
        await waitState(alice.page, 'synced', 15_000) // Alice's page reconnected by itself

        // REST edits show up live in both pages: an insert, then a whole-text replace.
        let r = await server.api('POST', `/api/documents/${doc.id}/edits`, { edits: [{ pos: 0, delete: 0, insert: '>> ' }] })
        assert.equal(r.status, 200, JSON.stringify(r.body))
        await waitPageText(alice.page, '>> ' + typed)
        await waitPageText(carol.page, '>> ' + typed)
        r = await server.api('PUT', `/api/documents/${doc.id}/text`, 'replaced through the API\n')
        assert.equal(r.status, 200, JSON.stringify(r.body))
        await waitPageText(alice.page, 'replaced through the API\n')
        assert.equal(await editorText(alice.page), 'replaced through the API\n')
        await waitPageText(carol.page, 'replaced through the API\n')

        assertNoErrors(alice, SOCKET_ERRORS) // the restart drops the socket for a moment
        assertNoErrors(carol)
      } finally {
        await closeAll(alice, carol)
      }
    })
  })

  it('edits typed offline are kept, the page says offline, and they merge and reach the other person on reconnect', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('offline', async (server) => {
      const doc = await server.createDocument('Offline', 'shared start\n')
      const alice = await person(browser, server, { ...ALICE, routeSocket: true })
      const bob = await person(browser, server, BOB)
      try {
        await Promise.all([openDocument(alice, doc.id), openDocument(bob, doc.id)])
        await placeCursor(alice.page, 'shared start\n'.length)
        await placeCursor(bob.page, 0)

        await alice.network.block()
        await waitState(alice.page, 'offline', 5000)
        assert.match(await alice.page.locator('.status').textContent(), /Offline/)
        assert.match(await alice.page.locator('.banner.offline').textContent(), /offline/i)

        await alice.page.keyboard.type('typed while offline 😀')
        await bob.page.keyboard.type('Bob online: ')
        await sleep(700)
        assert.doesNotMatch(await pageText(bob.page), /offline/, 'an edit got through a blocked socket')
        assert.doesNotMatch(await pageText(alice.page), /Bob online/)
        assert.match(await pageText(alice.page), /typed while offline 😀/)

        // Back online: both sides merge, the page says synced again.
        await alice.network.unblock()
        const both = 'Bob online: shared start\ntyped while offline 😀'
        await waitPageText(bob.page, both)
        await waitPageText(alice.page, both)
        await waitState(alice.page, 'synced')
        assert.equal(await server.text(doc.id), both)

        // Kept in IndexedDB: offline edits survive closing the page before the connection
        // returns, and are sent when the document is opened again.
        await alice.network.block()
        await waitState(alice.page, 'offline', 5000)
        await placeCursor(alice.page, both.length)
        // y-indexeddb writes each update of the document, except its own, as one record (no
        // trimming below 500). Count the records and the updates from here on: once the store
        // holds one more record per update, every offline edit has committed. (Its own
        // _dbsize is no measure: a count finishing during start-up overwrites increments.)
        const storedRecords = (id) => alice.page.evaluate((id) => new Promise((resolve) => {
          const req = indexedDB.open(`quire:${id}`)
          req.onerror = () => resolve(-1)
          req.onsuccess = () => {
            const db = req.result
            const count = db.transaction('updates', 'readonly').objectStore('updates').count()
            count.onsuccess = () => { db.close(); resolve(count.result) }
            count.onerror = () => { db.close(); resolve(-1) }
          }
        }), id)
        await alice.page.evaluate(() => {
          const { ydoc, local } = window.quire.session
          window.quireUpdatesToStore = 0
          ydoc.on('update', (_update, origin) => { if (origin !== local) window.quireUpdatesToStore++ })
        })
        const recordsBefore = await storedRecords(doc.id)
        assert.ok(recordsBefore > 0, `y-indexeddb holds ${recordsBefore} records of this document`)
        await alice.page.keyboard.type(' +kept')
        await waitPageText(alice.page, both + ' +kept')
        let recordsNow, updates
        await until(async () => `y-indexeddb stored every offline edit: ${recordsNow} records, ${recordsBefore} before ${updates} updates`, async () => {
          updates = await alice.page.evaluate(() => window.quireUpdatesToStore)
          recordsNow = await storedRecords(doc.id)
          return updates > 0 && recordsNow === recordsBefore + updates
        }, 5000)
        await alice.page.close()
        await sleep(300)
        assert.equal(await server.text(doc.id), both, 'the closed offline page cannot have sent anything')
        await alice.network.unblock()
        alice.page = await newPage(alice)
        await openDocument(alice, doc.id)
        await waitPageText(bob.page, both + ' +kept')
        await until('the server has the edit kept offline', async () => (await server.text(doc.id)) === both + ' +kept')

        assertNoErrors(alice, SOCKET_ERRORS)
        assertNoErrors(bob)
      } finally {
        await closeAll(alice, bob)
      }
    })
  })

  it('non-BMP text typed in the browser arrives intact through REST, and the other way round', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('emoji', async (server) => {
      const doc = await server.createDocument('Emoji', 'a😀b')
      const alice = await person(browser, server, ALICE)
      try {
        await openDocument(alice, doc.id)
        assert.equal(await pageText(alice.page), 'a😀b')
        await placeCursor(alice.page, 'a😀b'.length) // UTF-16: 4
        await alice.page.keyboard.type(' 👩‍👩‍👧 𝄞 🎉')
        const typed = 'a😀b 👩‍👩‍👧 𝄞 🎉'
        await until(async () => `the REST text ${JSON.stringify(await server.text(doc.id))} is ${JSON.stringify(typed)}`,
          async () => (await server.text(doc.id)) === typed)
        const meta = await server.api('GET', `/api/documents/${doc.id}`)
        assert.equal(meta.body.length, [...typed].length, 'the REST length counts Unicode chars')

        // REST positions count chars: 2 is after 😀; deleting char 1 removes the whole emoji.
        let r = await server.api('POST', `/api/documents/${doc.id}/edits`, { edits: [{ pos: 2, delete: 0, insert: '🙂' }] })
        assert.equal(r.status, 200, JSON.stringify(r.body))
        await waitPageText(alice.page, 'a😀🙂b 👩‍👩‍👧 𝄞 🎉')
        r = await server.api('POST', `/api/documents/${doc.id}/edits`, { edits: [{ pos: 1, delete: 1, insert: '' }] })
        assert.equal(r.status, 200, JSON.stringify(r.body))
        const after = 'a🙂b 👩‍👩‍👧 𝄞 🎉'
        await waitPageText(alice.page, after)
        assert.equal(await editorText(alice.page), after)
        assert.ok(!/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(await editorText(alice.page)), 'no lone surrogate')
        // The status bar counts chars as the API does.
        await until('the status bar shows the char count', async () =>
          (await alice.page.locator('.statusbar').textContent()).includes(`${[...after].length} chars`))

        // Backspace in the browser deletes a whole emoji, as a person expects.
        await placeCursor(alice.page, after.length)
        await alice.page.keyboard.press('Backspace')
        await until('the server lost exactly 🎉', async () => (await server.text(doc.id)) === 'a🙂b 👩‍👩‍👧 𝄞 ')
        assertNoErrors(alice)
      } finally {
        await closeAll(alice)
      }
    })
  })

  it('the document list creates, opens, renames and deletes documents', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('list', async (server) => {
      const alice = await person(browser, server, ALICE)
      const bob = await person(browser, server, BOB)
      try {
        const page = alice.page
        await page.goto(server.url + '/')
        await page.locator('.empty').waitFor({ state: 'visible' })
        await page.locator('.new-doc input').fill('Team notes')
        await page.locator('.new-doc button[type=submit]').click()
        await page.waitForURL(/\/d\/[A-Za-z0-9._-]+$/)
        const id = page.url().split('/d/')[1]
        await waitState(page, 'synced')
        await until('the title shows the name', async () => (await page.locator('.doc-title').textContent()) === 'Team notes')
        await page.waitForFunction(() => window.quire.session.editable)
        await page.keyboard.type('hello')
        await until('the server has the text', async () => (await server.text(id)) === 'hello')

        // Bob keeps the document open; it will be deleted under him.
        await openDocument(bob, id)

        await page.locator('a.back').click()
        await page.waitForURL(server.url + '/')
        const row = page.locator(`tr[data-id="${id}"]`)
        await row.waitFor()
        assert.equal(await row.locator('.doc-link').textContent(), 'Team notes')
        await until('the list shows the length', async () => {
          if ((await row.locator('.col-length').textContent()) === '5 chars') return true
          await page.evaluate(() => window.dispatchEvent(new Event('focus'))) // reloads the list
          return false
        })
        assert.notEqual(await row.locator('.col-updated').textContent(), '—')

        await row.getByRole('button', { name: 'Rename' }).click()
        await row.locator('.rename-input').fill('Team notes (renamed)')
        await row.locator('.rename-input').press('Enter')
        await until('the server has the new name', async () =>
          (await server.api('GET', `/api/documents/${id}`)).body.name === 'Team notes (renamed)')
        assert.equal(await row.locator('.doc-link').textContent(), 'Team notes (renamed)')

        await row.getByRole('button', { name: 'Delete' }).click()
        await row.locator('.confirm').waitFor()
        await row.getByRole('button', { name: 'Delete' }).click()
        await row.waitFor({ state: 'detached' })
        assert.equal((await server.api('GET', `/api/documents/${id}`)).status, 404)
        await page.locator('.empty').waitFor({ state: 'visible' })

        // Bob's page learns the document is gone and stops.
        await waitState(bob.page, 'closed')
        assert.match(await bob.page.locator('.banner.closed').textContent(), /no longer available/)
        assertNoErrors(alice)
        assertNoErrors(bob, SOCKET_ERRORS)
      } finally {
        await closeAll(alice, bob)
      }
    })
  })

  it('the history panel lists changes by author, scrubs versions, names one, and restores it', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('history', async (server) => {
      const doc = await server.createDocument('History', 'one')
      for (const text of ['one two', 'one two three']) {
        const r = await server.api('PUT', `/api/documents/${doc.id}/text`, text)
        assert.equal(r.status, 200, JSON.stringify(r.body))
      }
      const alice = await person(browser, server, ALICE)
      try {
        const page = alice.page
        await openDocument(alice, doc.id)
        assert.equal(await pageText(page), 'one two three')
        // Alice types: her change carries the name her editor publishes.
        await page.evaluate(() => window.quire.view.dispatch({ selection: { anchor: window.quire.view.state.doc.length } }))
        await page.keyboard.type('!')
        await until('the server has Alice\'s edit', async () => (await server.text(doc.id)) === 'one two three!')
        await page.locator('[data-action=history]').click()
        const entries = page.locator('.versions .version[data-seq]')
        // Changes: Alice's, the two text replacements (one origin, no pause), the creation.
        await until('three changes are listed', async () => (await entries.count()) === 3)
        const authors = await page.locator('.versions .v-author').allTextContents()
        assert.equal(authors[0], 'Alice', `the newest change is Alice's: ${authors}`)
        const seqs = await entries.evaluateAll((els) => els.map((e) => Number(e.dataset.seq)))
        assert.deepEqual(seqs, [4, 3, 1])
        assert.match(await entries.nth(1).textContent(), /#2–3/)

        const viewer = page.locator('.version-view .cm-content')
        await page.locator('.version[data-seq="1"]').click()
        await until('the oldest version is shown', async () => (await viewer.textContent()) === 'one')
        assert.ok(await page.locator('.editor').isHidden(), 'the live editor is replaced while viewing a version')
        assert.match(await page.locator('.banner.viewing').textContent(), /Version #1/)
        await page.getByRole('button', { name: 'Newer ▶' }).click()
        await until('the next change is shown', async () => (await viewer.textContent()) === 'one two three')
        await page.getByRole('button', { name: '◀ Older' }).click()
        await until('back to the oldest', async () => (await viewer.textContent()) === 'one')

        // The slider reaches every version, also inside a change.
        await page.locator('.time-slider').evaluate((el) => { el.value = '2'; el.dispatchEvent(new Event('input', { bubbles: true })) })
        await until('version 2 is shown', async () => (await viewer.textContent()) === 'one two')
        assert.match(await page.locator('.banner.viewing').textContent(), /Version #2/)

        // Name it; named versions come first.
        await page.locator('.version-name').fill('second draft')
        await page.locator('.name-form button[type=submit]').click()
        await page.locator('.version.named[data-named="second draft"]').waitFor({ timeout: 5000 })
        const named = await server.api('GET', `/api/documents/${doc.id}/versions`)
        assert.deepEqual(named.body.versions.map((v) => [v.name, v.version]), [['second draft', 2]])

        await page.getByRole('button', { name: 'Restore this version' }).click()
        await waitPageText(page, 'one two')
        assert.ok(await page.locator('.editor').isVisible(), 'back to the live editor after restoring')
        assert.equal(await server.text(doc.id), 'one two')
        await until('the restore is in the history too', async () => (await entries.count()) >= 4)
        assertNoErrors(alice)
      } finally {
        await closeAll(alice)
      }
    })
  })

  it('"Authors" colours the text by who typed it, with the server\'s colours, live', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('authors', async (server) => {
      const doc = await server.createDocument('Authors', '')
      const alice = await person(browser, server, ALICE)
      const bob = await person(browser, server, BOB)
      try {
        await Promise.all([openDocument(alice, doc.id), openDocument(bob, doc.id)])
        await alice.page.keyboard.type('alice wrote this. ')
        await waitPageText(bob.page, 'alice wrote this. ')
        await placeCursor(bob.page, 'alice wrote this. '.length)
        await bob.page.keyboard.type('bob added that.')
        const both = 'alice wrote this. bob added that.'
        await waitPageText(alice.page, both)
        await until('the server has both', async () => (await server.text(doc.id)) === both)

        await alice.page.locator('[data-action=authors]').click()
        const marked = (page, who) => page.locator(`.cm-author[data-author="${who}"]`).allTextContents().then((t) => t.join(''))
        await until('Bob\'s text is his in Alice\'s page', async () => (await marked(alice.page, BOB.name)) === 'bob added that.')
        assert.equal(await marked(alice.page, ALICE.name), 'alice wrote this. ')
        // The page's colours are the server's.
        const blame = (await server.api('GET', `/api/documents/${doc.id}/blame`)).body
        for (const a of blame.authors) {
          const color = await alice.page.locator(`.cm-author[data-author="${a.name}"]`).first().getAttribute('data-color')
          assert.equal(color, a.color, `${a.name}'s colour`)
        }
        assert.match(await alice.page.locator('.authors-legend').textContent(), /Alice.*Bob|Bob.*Alice/)

        // Live: Bob types on, and his new text takes his colour in Alice's page.
        await bob.page.keyboard.type(' More.')
        await until('Bob\'s new text is his too', async () => (await marked(alice.page, BOB.name)) === 'bob added that. More.')
        // Alice's own typing is hers at once.
        await placeCursor(alice.page, 0)
        await alice.page.keyboard.type('> ')
        await until('Alice\'s new text is hers', async () => (await marked(alice.page, ALICE.name)).startsWith('> '))
        // Off again: no colours.
        await alice.page.locator('[data-action=authors]').click()
        await until('the colours are gone', async () => (await alice.page.locator('.cm-author').count()) === 0)
        assertNoErrors(alice)
        assertNoErrors(bob)
      } finally {
        await closeAll(alice, bob)
      }
    })
  })

  it('search and replace, and autocomplete from the server\'s words', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('search', async (server) => {
      const doc = await server.createDocument('Words', 'collaborate with collaborators\nfoo bar foo\n')
      const alice = await person(browser, server, ALICE)
      try {
        const page = alice.page
        await openDocument(alice, doc.id)

        // Ctrl+F opens the search panel; replace all.
        await page.keyboard.press('Control+f')
        const search = page.locator('.cm-search input[name=search]')
        await search.waitFor()
        await search.fill('')
        await search.type('foo')
        await page.locator('.cm-search input[name=replace]').type('baz')
        await page.locator('.cm-search button[name=replaceAll]').click()
        await waitPageText(page, 'collaborate with collaborators\nbaz bar baz\n')
        await until('the server has the replacement', async () => (await server.text(doc.id)) === 'collaborate with collaborators\nbaz bar baz\n')
        await page.keyboard.press('Escape')

        // Typing a prefix asks the server's /complete and offers its words.
        await placeCursor(page, (await pageText(page)).length)
        const asked = page.waitForRequest((req) => req.url().includes(`/api/documents/${doc.id}/complete?prefix=col`), { timeout: 5000 })
        await page.keyboard.type('col')
        await asked
        const labels = page.locator('.cm-tooltip-autocomplete .cm-completionLabel')
        await until('both words are offered', async () => {
          const words = await labels.allTextContents()
          return words.includes('collaborate') && words.includes('collaborators')
        })
        await page.locator('.cm-tooltip-autocomplete li', { hasText: 'collaborators' }).click()
        await waitPageText(page, 'collaborate with collaborators\nbaz bar baz\ncollaborators')
        assertNoErrors(alice)
      } finally {
        await closeAll(alice)
      }
    })
  })

  it('a read-only token shows read-only and its typing changes nothing; a read-write token\'s edit arrives', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('tokens', async (server) => {
      const doc = await server.createDocument('Tokens', 'read me\n')
      const ro = await server.mintToken(doc.id, 'read-only')
      const rw = await server.mintToken(doc.id, 'read-write')
      const viewer = await person(browser, server, BOB)
      const writer = await person(browser, server, ALICE)
      try {
        // The viewer opens the page with a read-only token in the URL.
        const page = viewer.page
        await page.goto(`${server.url}/d/${doc.id}?token=${encodeURIComponent(ro.token)}`, { waitUntil: 'domcontentloaded' })
        await waitState(page, 'synced')
        assert.equal(await pageText(page), 'read me\n')
        assert.doesNotMatch(page.url(), /token=/, 'the token is taken out of the address bar')
        await until('the status says read-only', async () => /Read-only/.test(await page.locator('.status').textContent()))
        assert.equal(await page.evaluate(() => window.quire.session.editable), false)
        assert.equal(await page.evaluate(() => window.quire.view.state.readOnly), true)
        assert.equal(await page.locator('.cm-content').getAttribute('contenteditable'), 'false')

        // Typing changes nothing, locally or on the server.
        await page.locator('.cm-content').click()
        await page.keyboard.type('VIEWER')
        await page.keyboard.press('Backspace')
        await sleep(500)
        assert.equal(await pageText(page), 'read me\n')
        assert.equal(await server.text(doc.id), 'read me\n')

        // The writer's read-write token edits; the edit reaches the server and the viewer.
        await writer.page.goto(`${server.url}/d/${doc.id}?token=${encodeURIComponent(rw.token)}`, { waitUntil: 'domcontentloaded' })
        await waitState(writer.page, 'synced')
        await writer.page.waitForFunction(() => window.quire?.session?.editable === true, null, { timeout: 10_000 })
        assert.doesNotMatch(await writer.page.locator('.status').textContent(), /Read-only/)
        await placeCursor(writer.page, 'read me\n'.length)
        await writer.page.keyboard.type('written')
        await until('the server has the writer\'s edit', async () => (await server.text(doc.id)) === 'read me\nwritten')
        await waitPageText(page, 'read me\nwritten')
        assertNoErrors(viewer)
        assertNoErrors(writer)
      } finally {
        await closeAll(viewer, writer)
      }
    }, { authSecret: 'browser-test-secret-0123456789' })
  })

  it('serves the page and its assets with caching, compression and a content security policy', { timeout: TEST_TIMEOUT }, async () => {
    await withServer('assets', async (server) => {
      const page = await fetch(server.url + '/')
      assert.equal(page.status, 200)
      assert.match(page.headers.get('content-type'), /^text\/html/)
      assert.equal(page.headers.get('cache-control'), 'no-cache')
      assert.match(page.headers.get('content-security-policy'), /default-src 'self'/)
      const html = await page.text()
      const js = html.match(/src="(\/assets\/app\.js\?v=[0-9a-f]{8})"/)?.[1]
      assert.ok(js, 'index.html names app.js with its version')

      const r = await fetch(server.url + js, { headers: { 'accept-encoding': 'gzip' } })
      assert.equal(r.status, 200)
      assert.match(r.headers.get('content-type'), /^text\/javascript/)
      assert.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable')
      assert.equal(r.headers.get('content-encoding'), 'gzip')
      const etag = r.headers.get('etag')
      assert.ok(etag)
      await r.arrayBuffer()
      const again = await fetch(server.url + js, { headers: { 'if-none-match': etag } })
      assert.equal(again.status, 304)
      const stale = await fetch(server.url + '/assets/app.js?v=00000000')
      assert.equal(stale.headers.get('cache-control'), 'no-cache')
      assert.equal((await fetch(server.url + '/d/some-doc')).status, 200)
      assert.equal((await fetch(server.url + '/assets/nope.js')).status, 404)
    })
  })

  it('is editable within 1 s of opening, on loopback', { timeout: TEST_TIMEOUT }, async (t) => {
    await withServer('load', async (server) => {
      const text = Array.from({ length: 200 }, (_, i) => `line ${i + 1}: the quick brown fox jumps over the lazy dog`).join('\n')
      const doc = await server.createDocument('Load time', text)
      // Warm the server's copy of the document, as a document someone is editing would be.
      const warm = await person(browser, server, BOB)
      await openDocument(warm, doc.id)
      const runs = []
      try {
        for (let i = 0; i < 5; i++) {
          const p = await person(browser, server, ALICE) // fresh context: empty cache and IndexedDB
          try {
            await p.page.goto(`${server.url}/d/${doc.id}`, { waitUntil: 'commit' })
            await p.page.waitForFunction(() => window.quire?.session?.editable === true, null, { timeout: 10_000 })
            // Navigation start → the editor accepts input (performance.now() counts from
            // navigation start); and then a keystroke really lands.
            const [editable, before] = await p.page.evaluate(() => [window.quire.session.timings.editable, window.quire.session.text()])
            await p.page.keyboard.type('!')
            await waitPageText(p.page, (s) => s === '!' + before)
            const landed = await p.page.evaluate(() => performance.now())
            runs.push({ editable: Math.round(editable), keystroke: Math.round(landed) })
          } finally {
            await closeAll(p)
          }
        }
      } finally {
        await closeAll(warm)
      }
      const sorted = runs.map((r) => r.editable).sort((a, b) => a - b)
      const median = sorted[Math.floor(sorted.length / 2)]
      const summary = `time to editable (navigation start → editor accepts input): median ${median} ms, ` +
        `runs ${runs.map((r) => r.editable).join(', ')} ms; first keystroke in the document by ${runs.map((r) => r.keystroke).join(', ')} ms`
      t.diagnostic(summary)
      console.log(summary)
      assert.ok(median <= 1000, summary)
    })
  })
})

// The browser tests' harness: a real quire-server (the built binary) on a fresh SQLite file,
// headless Debian Chromium driven by playwright-core, and small helpers whose every wait has a
// time limit and fails saying what it saw.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

export const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const repoRoot = path.resolve(webDir, '..')

const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 20_000

/** The quire-server binary: $QUIRE_SERVER_BIN, else <target dir>/debug/quire-server. */
export function serverBinary () {
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
    : path.join(repoRoot, 'target')
  const bin = process.env.QUIRE_SERVER_BIN || path.join(target, 'debug', 'quire-server')
  if (!existsSync(bin)) {
    throw new Error(`${bin} does not exist: build it with \`cargo build -p quire-backend --bin quire-server\` ` +
      '(the README test command ./scripts/test.sh does), or point QUIRE_SERVER_BIN at one')
  }
  return bin
}

/**
 * A quire-server process of one test's own, on a SQLite file in a scratch directory. With
 * `authSecret` it runs with access control (`--auth-secret`), and the harness's own REST calls
 * use the secret as their (admin) bearer token.
 */
export class Server {
  static async start (label = 'web', { authSecret } = {}) {
    serverBinary() // fails first, with directions, when there is none
    const dir = await mkdtemp(path.join(os.tmpdir(), `quire-web-${label}-`))
    const server = new Server(dir, { authSecret })
    try {
      await server.spawn(0)
    } catch (err) {
      await server.dispose(true)
      throw err
    }
    return server
  }

  constructor (dir, { authSecret } = {}) {
    this.dir = dir
    this.authSecret = authSecret
    this.child = null
    this.port = 0
    this.logLines = []
  }

  get url () {
    return `http://127.0.0.1:${this.port}`
  }

  async spawn (port) {
    const bin = serverBinary()
    const child = spawn(bin, [
      '--listen', `127.0.0.1:${port}`,
      '--database-url', `sqlite:${path.join(this.dir, 'quire.db')}`,
      ...(this.authSecret ? ['--auth-secret', this.authSecret] : [])
    ], {
      env: { ...process.env, RUST_LOG: process.env.QUIRE_TEST_SERVER_LOG || 'info', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    this.child = child
    const keep = (chunk) => {
      for (const line of chunk.toString().split('\n')) {
        if (line) this.logLines.push(line)
      }
      if (this.logLines.length > 400) this.logLines.splice(0, this.logLines.length - 400)
    }
    child.stderr.on('data', keep)
    this.port = await new Promise((resolve, reject) => {
      let buffered = ''
      const timer = setTimeout(() => {
        reject(new Error(`quire-server did not print "listening on" within ${START_TIMEOUT_MS} ms\n${this.logTail()}`))
      }, START_TIMEOUT_MS)
      child.stdout.on('data', (chunk) => {
        buffered += chunk.toString()
        const m = buffered.match(/^listening on [^\n]*:(\d+)\s*$/m)
        if (m) {
          clearTimeout(timer)
          resolve(Number(m[1]))
        }
        keep(chunk)
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`quire-server exited before listening (${code ?? signal})\n${this.logTail()}`))
      })
      child.once('error', (err) => {
        clearTimeout(timer)
        reject(new Error(`cannot start ${bin}: ${err.message}`))
      })
    })
  }

  /** SIGTERM (the server flushes every document), then waits for a clean exit. */
  async stop () {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    this.child = null
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
    child.kill('SIGTERM')
    const result = await Promise.race([exited, sleep(STOP_TIMEOUT_MS).then(() => null)])
    if (!result) {
      child.kill('SIGKILL')
      throw new Error(`quire-server did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM\n${this.logTail()}`)
    }
    if (result.code !== 0) throw new Error(`quire-server exited with ${result.code ?? result.signal} after SIGTERM\n${this.logTail()}`)
  }

  /** Stops the server and starts it again on the same port and database. */
  async restart () {
    await this.stop()
    const port = this.port
    // The port was ours a moment ago; retry briefly in case the kernel holds it.
    for (let i = 0; ; i++) {
      try {
        await this.spawn(port)
        return
      } catch (err) {
        if (i >= 20) throw err
        await sleep(100)
      }
    }
  }

  logTail (n = 40) {
    return `--- quire-server log (${this.dir}) ---\n${this.logLines.slice(-n).join('\n')}\n---`
  }

  /** Kills the server; removes its directory unless the test failed (then it is kept). */
  async dispose (failed = false) {
    if (this.child && this.child.exitCode === null) {
      this.child.kill('SIGKILL')
      this.child = null
    }
    if (failed) {
      await writeFile(path.join(this.dir, 'server.log'), this.logLines.join('\n')).catch(() => {})
      console.error(`kept ${this.dir} for inspection\n${this.logTail()}`)
    } else {
      await rm(this.dir, { recursive: true, force: true })
    }
  }

  /** A REST call: `{ status, headers, body }` (body parsed when JSON). */
  async api (method, route, body, { type, token = this.authSecret } = {}) {
    const headers = {}
    if (token) headers.authorization = `Bearer ${token}`
    let payload
    if (body !== undefined) {
      if (typeof body === 'string') {
        headers['content-type'] = type || 'text/plain; charset=utf-8'
        payload = body
      } else {
        headers['content-type'] = 'application/json'
        payload = JSON.stringify(body)
      }
    }
    const res = await fetch(this.url + route, { method, headers, body: payload, signal: AbortSignal.timeout(10_000) })
    const ct = res.headers.get('content-type') || ''
    const text = await res.text()
    return { status: res.status, headers: res.headers, body: ct.includes('json') && text ? JSON.parse(text) : text }
  }

  async createDocument (name, text) {
    const r = await this.api('POST', '/api/documents', { name, text })
    if (r.status !== 201) throw new Error(`creating a document: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body
  }

  /** Mints an access token (needs `authSecret`): `{ token, jti, role, … }`. */
  async mintToken (document, role, expiresIn = 600) {
    const r = await this.api('POST', '/api/tokens', { document, role, expires_in: expiresIn })
    if (r.status !== 201) throw new Error(`minting a ${role} token: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body
  }

  async text (id) {
    const r = await this.api('GET', `/api/documents/${id}/text`)
    if (r.status !== 200) throw new Error(`GET text of ${id}: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body
  }
}

export function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` every 25 ms until it returns a truthy value; fails after `ms` with `what()`. */
export async function until (what, check, ms = 10_000) {
  const deadline = Date.now() + ms
  let last
  for (;;) {
    last = await check()
    if (last) return last
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${ms} ms waiting until ${typeof what === 'function' ? await what() : what}`)
    }
    await sleep(25)
  }
}

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--no-first-run', '--disable-sync', '--disable-quic', '--disable-dev-shm-usage'
]

/** Headless Chromium: $QUIRE_CHROMIUM, else Debian's /usr/bin/chromium. */
export async function launchBrowser () {
  const executablePath = process.env.QUIRE_CHROMIUM || '/usr/bin/chromium'
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} does not exist: install Debian's chromium (apt-get install chromium; ` +
      'the README test command ./scripts/test.sh does it when run as root) or set QUIRE_CHROMIUM')
  }
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 })
}

/**
 * A person: a browser context of their own (own localStorage and IndexedDB) with their name
 * and colour set, and a page. Page errors and console errors are collected in `errors`.
 */
export async function person (browser, server, { name, color, routeSocket = false, viewport } = {}) {
  const context = await browser.newContext({ viewport: viewport ?? { width: 1280, height: 720 }, deviceScaleFactor: 1 })
  context.setDefaultTimeout(10_000)
  // The person's first page load starts with their name and colour; later loads keep
  // whatever the page saved since.
  await context.addInitScript(([n, c]) => {
    if (n && !localStorage.getItem('quire.name')) localStorage.setItem('quire.name', n)
    if (c && !localStorage.getItem('quire.color')) localStorage.setItem('quire.color', c)
  }, [name, color])
  const p = { name, context, server, errors: [], network: null }
  if (routeSocket) p.network = await controllableSocket(context)
  p.page = await newPage(p)
  return p
}

export async function newPage (p) {
  const page = await p.context.newPage()
  page.on('pageerror', (err) => p.errors.push(`page error: ${err.message}`))
  page.on('console', (msg) => {
    if (msg.type() === 'error') p.errors.push(`console: ${msg.text()}`)
  })
  return page
}

/**
 * Routes the context's WebSockets through Playwright so a test can cut them: `block()` closes
 * every open socket and refuses new ones (and tells the browser it is offline); `unblock()`
 * lets them through again.
 */
async function controllableSocket (context) {
  const net = { blocked: false, open: new Set(), refused: 0 }
  await context.routeWebSocket(/\/ws\//, (ws) => {
    if (net.blocked) {
      net.refused++
      ws.close({ code: 1011, reason: 'blocked by the test' }).catch(() => {})
      return
    }
    const server = ws.connectToServer()
    const pair = { ws, server }
    net.open.add(pair)
    ws.onClose(() => net.open.delete(pair))
    server.onClose(() => net.open.delete(pair))
  })
  net.block = async () => {
    net.blocked = true
    await context.setOffline(true)
    for (const { ws, server } of [...net.open]) {
      await ws.close({ code: 1006, reason: 'network down' }).catch(() => {})
      await server.close().catch(() => {})
    }
    net.open.clear()
  }
  net.unblock = async () => {
    net.blocked = false
    await context.setOffline(false)
  }
  return net
}

/** Opens `/d/{id}` and waits until the editor accepts input and is synced. */
export async function openDocument (p, id, { page = p.page, state = 'synced' } = {}) {
  await page.goto(`${p.server.url}/d/${id}`, { waitUntil: 'domcontentloaded' })
  await waitState(page, state)
  await page.waitForFunction(() => window.quire?.session?.editable === true, null, { timeout: 10_000 })
  return page
}

export async function waitState (page, state, ms = 10_000) {
  try {
    await page.waitForFunction((s) => window.quire?.session?.state === s, state, { timeout: ms })
  } catch (err) {
    const now = await page.evaluate(() => window.quire?.session?.state).catch(() => '?')
    throw new Error(`the page did not reach state ${state} within ${ms} ms (it is ${now})`)
  }
}

/** The page's shared text (ydoc.getText('content')). */
export function pageText (page) {
  return page.evaluate(() => window.quire.session.text())
}

/** What CodeMirror shows (its document, which y-codemirror keeps equal to the shared text). */
export function editorText (page) {
  return page.evaluate(() => window.quire.view.state.doc.toString())
}

/** JSON of `s`, cut to `n` chars, for messages. */
export function show (s, n = 200) {
  const j = JSON.stringify(s)
  return j.length > n ? `${j.slice(0, n)}… (${j.length} chars)` : j
}

export async function waitPageText (page, expected, ms = 10_000) {
  const test = typeof expected === 'function' ? expected : (t) => t === expected
  await until(async () => `the page's text ${show(await pageText(page))} matched ${typeof expected === 'function' ? expected.toString() : show(expected)}`,
    async () => test(await pageText(page)), ms)
  return pageText(page)
}

/** Puts the cursor at char offset `pos` (UTF-16, as CodeMirror counts) and focuses the editor. */
export async function placeCursor (page, pos, anchor = pos) {
  await page.evaluate(([head, a]) => {
    const view = window.quire.view
    view.focus()
    view.dispatch({ selection: { anchor: a, head } })
  }, [pos, anchor])
}

export async function closeAll (...people) {
  for (const p of people) await p?.context.close().catch(() => {})
}

/** Fails with the collected page errors, if any (after filtering `allowed`). */
export function assertNoErrors (p, allowed = []) {
  const bad = p.errors.filter((e) => !allowed.some((re) => re.test(e)))
  if (bad.length) throw new Error(`${p.name}'s page reported errors:\n${bad.join('\n')}`)
}

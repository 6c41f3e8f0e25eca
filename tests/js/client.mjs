#!/usr/bin/env node
// A stock Yjs client (yjs + y-websocket 3, exactly what a browser runs) for quire's end-to-end
// tests. It connects, waits for `synced`, makes the requested edits, optionally waits until the
// shared text equals an expected value, and exits 0 with the final text as JSON on stdout
// (`{"text": "..."}`), or non-zero with a clear message on stderr.
//
// Usage:
//   node client.mjs --server ws://HOST:PORT/ws --doc DOC
//                   [--insert POS TEXT]... [--append TEXT]... [--expect TEXT] [--timeout-ms N]
//
// POS counts UTF-16 code units, as Yjs does. Edits run in the order given, after `synced`.
// The shared text is `ydoc.getText('content')`.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

function usage (msg) {
  console.error(`client.mjs: ${msg}`)
  console.error('usage: node client.mjs --server ws://HOST:PORT/ws --doc DOC [--insert POS TEXT]... [--append TEXT]... [--expect TEXT] [--timeout-ms N]')
  process.exit(2)
}

const args = process.argv.slice(2)
let server = null
let room = null
let expect = null
let timeoutMs = 15000
const edits = []
for (let i = 0; i < args.length; i++) {
  const need = (n) => {
    if (i + n >= args.length) usage(`${args[i]} needs ${n} value(s)`)
  }
  switch (args[i]) {
    case '--server': need(1); server = args[++i]; break
    case '--doc': need(1); room = args[++i]; break
    case '--expect': need(1); expect = args[++i]; break
    case '--timeout-ms': need(1); timeoutMs = Number(args[++i]); break
    case '--append': need(1); edits.push({ pos: null, text: args[++i] }); break
    case '--insert': {
      need(2)
      const pos = Number(args[++i])
      if (!Number.isInteger(pos) || pos < 0) usage(`bad position ${args[i]}`)
      edits.push({ pos, text: args[++i] })
      break
    }
    default: usage(`unknown argument ${args[i]}`)
  }
}
if (!server || !room) usage('--server and --doc are required')
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) usage('bad --timeout-ms')

const ydoc = new Y.Doc()
const ytext = ydoc.getText('content')
const provider = new WebsocketProvider(server, room, ydoc, {
  WebSocketPolyfill: WebSocket,
  disableBc: true,
  // A test wants to see a failure, not a reconnect loop.
  maxBackoffTime: 500
})

let phase = 'connecting'
const closes = []
provider.on('connection-close', (event) => {
  if (event) closes.push(`${event.code} ${JSON.stringify(event.reason?.toString() ?? '')}`)
})
provider.on('connection-error', (event) => {
  closes.push(`error: ${event?.message ?? event}`)
})

const deadline = setTimeout(() => {
  fail(`timed out after ${timeoutMs} ms while ${phase}; text now ${JSON.stringify(ytext.toString())}` +
    (expect !== null ? `; expected ${JSON.stringify(expect)}` : '') +
    (closes.length ? `; socket closes seen: ${closes.join(', ')}` : ''))
}, timeoutMs)

function fail (msg) {
  console.error(`client.mjs: ${msg}`)
  try { provider.destroy() } catch {}
  process.exit(1)
}

function waitFor (pred) {
  return new Promise((resolve) => {
    if (pred()) return resolve()
    const check = () => {
      if (pred()) {
        ydoc.off('update', check)
        resolve()
      }
    }
    ydoc.on('update', check)
  })
}

async function flushed () {
  // Everything we sent has left the process before we close the socket.
  while (provider.ws && provider.ws.bufferedAmount > 0) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function main () {
  phase = 'waiting for synced'
  if (!provider.synced) {
    await new Promise((resolve) => provider.once('synced', resolve))
  }
  phase = 'editing'
  for (const { pos, text } of edits) {
    const at = pos === null ? ytext.length : pos
    if (at > ytext.length) fail(`insert position ${at} is past the end (length ${ytext.length} UTF-16 units)`)
    ytext.insert(at, text)
  }
  if (expect !== null) {
    phase = 'waiting for the expected text'
    await waitFor(() => ytext.toString() === expect)
  }
  phase = 'flushing'
  await flushed()
  clearTimeout(deadline)
  const text = ytext.toString()
  provider.destroy()
  process.stdout.write(JSON.stringify({ text }) + '\n')
  process.exit(0)
}

main().catch((err) => fail(err?.stack ?? String(err)))

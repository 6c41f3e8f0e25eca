#!/usr/bin/env node
// A stock Yjs client (yjs + y-websocket 3) for quire's chaos test: it makes random edits
// (ASCII, multi-byte, emoji) at random positions while the test kills and restarts the server,
// and drops and reopens its own connection now and then. y-websocket reconnects on its own.
//
// Usage: node chaos.mjs --server ws://HOST:PORT/ws --doc DOC --seed N [--edits N] [--interval-ms N]
//
// After its edits it keeps syncing. When a line `finish` arrives on stdin it waits until it is
// connected and synced, prints `{"text": ..., "state": HEX(Y.encodeStateAsUpdate), "edits": N,
// "reconnects": N}` and exits 0.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const args = process.argv.slice(2)
const opt = { edits: 300, intervalMs: 10, seed: 1 }
let server = null
let room = null
for (let i = 0; i < args.length; i++) {
  switch (args[i]) {
    case '--server': server = args[++i]; break
    case '--doc': room = args[++i]; break
    case '--seed': opt.seed = Number(args[++i]); break
    case '--edits': opt.edits = Number(args[++i]); break
    case '--interval-ms': opt.intervalMs = Number(args[++i]); break
    default:
      console.error(`chaos.mjs: unknown argument ${args[i]}`)
      process.exit(2)
  }
}
if (!server || !room) {
  console.error('chaos.mjs: --server and --doc are required')
  process.exit(2)
}

// xorshift32, seeded: the edits are reproducible from the seed the test prints.
let s = (opt.seed >>> 0) || 1
function rand (n) {
  s ^= s << 13; s >>>= 0
  s ^= s >>> 17
  s ^= s << 5; s >>>= 0
  return s % n
}
const PIECES = ['j', 's', 'JS ', 'é', 'ñ', '中', '🙂', '🚀', '\n']

const ydoc = new Y.Doc()
const ytext = ydoc.getText('content')
const provider = new WebsocketProvider(server, room, ydoc, {
  WebSocketPolyfill: WebSocket,
  disableBc: true,
  maxBackoffTime: 300
})
let reconnects = 0

// A UTF-16 offset that does not split a surrogate pair.
function boundary (str, at) {
  if (at > 0 && at < str.length) {
    const c = str.charCodeAt(at)
    if (c >= 0xdc00 && c <= 0xdfff) return at - 1
  }
  return at
}

function edit () {
  const str = ytext.toString()
  if (str.length > 0 && rand(3) === 0) {
    const at = boundary(str, rand(str.length))
    let end = boundary(str, Math.min(str.length, at + 1 + rand(4)))
    if (end <= at) end = Math.min(str.length, at + 2)
    ytext.delete(at, end - at)
  } else {
    let ins = ''
    for (let k = 0; k <= rand(3); k++) ins += PIECES[rand(PIECES.length)]
    ytext.insert(boundary(str, rand(str.length + 1)), ins)
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function run () {
  for (let i = 0; i < opt.edits; i++) {
    edit()
    if (rand(60) === 0) {
      provider.disconnect()
      await sleep(rand(100))
      provider.connect()
      reconnects++
    }
    await sleep(opt.intervalMs)
  }
}

let finishing = false
readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  if (line.trim() !== 'finish' || finishing) return
  finishing = true
  await editing
  const deadline = Date.now() + 30000
  // Connected and synced after the last edit; then let what we sent leave the process.
  while (!(provider.wsconnected && provider.synced)) {
    if (Date.now() > deadline) {
      console.error('chaos.mjs: not synced within 30 s of finish')
      process.exit(1)
    }
    await sleep(20)
  }
  while (provider.ws && provider.ws.bufferedAmount > 0) await sleep(5)
  await sleep(100)
  const state = Buffer.from(Y.encodeStateAsUpdate(ydoc)).toString('hex')
  provider.destroy()
  // Exit only once the (long) line has left: a pipe write is asynchronous in node.
  process.stdout.write(JSON.stringify({ text: ytext.toString(), state, edits: opt.edits, reconnects }) + '\n', () => process.exit(0))
})

const editing = run()

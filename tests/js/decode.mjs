// Decodes Yjs v1 updates with the stock yjs, one hex-encoded update per stdin line, as a browser
// client would take them (Y.decodeUpdate, then Y.applyUpdate into a fresh Y.Doc). Prints one
// line per update: "ok" or "error <message>".
import * as Y from 'yjs'
import { createInterface } from 'node:readline'

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line) continue
  const update = Buffer.from(line, 'hex')
  try {
    Y.decodeUpdate(update)
    const doc = new Y.Doc()
    Y.applyUpdate(doc, update)
    doc.getText('content').toString()
    process.stdout.write('ok\n')
  } catch (err) {
    process.stdout.write(`error ${String(err?.message ?? err).replace(/\n/g, ' ')}\n`)
  }
}

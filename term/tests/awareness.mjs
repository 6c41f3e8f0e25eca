// A browser-less stock Yjs client — yjs + y-websocket + y-protocols' awareness, what the browser
// editor runs — that checks cursor interop with the terminal editor the way y-codemirror.next
// does it: it resolves the terminal's published cursor with
// Y.createAbsolutePositionFromRelativePosition on the raw awareness JSON, and publishes its own
// cursor made by Y.createRelativePositionFromTypeIndex.
//
// Run from tests/js (where the npm packages are) as `node --input-type=module -e <this file>`.
// Environment: QUIRE_WS (ws://HOST:PORT/ws), QUIRE_DOC, QUIRE_PEER (the terminal user's name),
// QUIRE_MARK (puts this client's cursor before the first occurrence of this text).
// Prints one JSON line per event: {peer, anchor, head, text} when the terminal's cursor (UTF-16
// indexes) changes, {placed} when its own cursor is set. Exits when stdin closes.

import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const { QUIRE_WS: server, QUIRE_DOC: room, QUIRE_PEER: peer, QUIRE_MARK: mark } = process.env
const ydoc = new Y.Doc()
const ytext = ydoc.getText('content')
const provider = new WebsocketProvider(server, room, ydoc, { WebSocketPolyfill: WebSocket, disableBc: true })
const awareness = provider.awareness
awareness.setLocalStateField('user', { name: 'jsbrowser', color: '#8e4ec6', colorLight: '#8e4ec633' })

const out = (o) => console.log(JSON.stringify(o))
const timer = setTimeout(() => {
  console.error('awareness.mjs timed out; text ' + JSON.stringify(ytext.toString()) +
    ', states ' + JSON.stringify([...awareness.getStates().values()]))
  process.exit(1)
}, 30000)

let reported = null
function check () {
  for (const [id, state] of awareness.getStates()) {
    if (id === ydoc.clientID || state?.user?.name !== peer || !state.cursor) continue
    // Exactly what y-codemirror.next's remote-selection plugin does with a peer's state.
    const anchor = Y.createAbsolutePositionFromRelativePosition(state.cursor.anchor, ydoc)
    const head = Y.createAbsolutePositionFromRelativePosition(state.cursor.head, ydoc)
    if (anchor == null || head == null || anchor.type !== ytext || head.type !== ytext) continue
    const key = `${anchor.index},${head.index},${ytext.length}`
    if (key !== reported) {
      reported = key
      out({ peer: state.user, anchor: anchor.index, head: head.index, text: ytext.toString() })
    }
  }
}

function place () {
  const i = ytext.toString().indexOf(mark)
  if (i >= 0 && !awareness.getLocalState().cursor) {
    const pos = Y.createRelativePositionFromTypeIndex(ytext, i)
    awareness.setLocalStateField('cursor', { anchor: pos, head: pos })
    out({ placed: i })
  }
}

awareness.on('change', check)
ydoc.on('update', () => { check(); place() })
provider.on('sync', place)
process.stdin.on('end', () => {
  clearTimeout(timer)
  provider.destroy()
  process.exit(0)
})
process.stdin.resume()

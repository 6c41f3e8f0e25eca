// Runs before the editor's code has loaded (a classic script in <head>): on a document page it
// opens the document's WebSocket at once, so the connection is set up while app.js downloads
// and starts. session.js hands this socket to y-websocket, replaying what it saw meanwhile.
(function () {
  var m = location.pathname.match(/^\/d\/([A-Za-z0-9._-]{1,128})\/?$/)
  if (!m || typeof WebSocket === 'undefined') return
  var url = (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws/' + m[1]
  // The access token, as token.js will find it (the URL, else this tab's sessionStorage), in
  // the query y-websocket builds from its params.
  var t = null
  try { t = new URLSearchParams(location.search).get('token') || sessionStorage.getItem('quire:token') } catch (e) {}
  if (t) url += '?token=' + encodeURIComponent(t)
  try {
    var ws = new WebSocket(url)
    ws.binaryType = 'arraybuffer'
    var early = { url: url, ws: ws, events: [] }
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = function (e) { early.events.push(e) }
    window.__quireEarlySocket = early
  } catch (e) {}
})()

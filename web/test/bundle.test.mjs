// web/dist is committed (quire-server embeds it, so `cargo run` needs no Node.js). This test
// rebuilds it from the sources with the pinned esbuild into a scratch directory and fails when
// the committed files differ: run `npm run build --prefix web` and commit web/dist. It also
// holds the JavaScript to its budget of 250 kB gzipped.

import { it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { gunzipSync } from 'node:zlib'
import os from 'node:os'
import path from 'node:path'
import { webDir } from './harness.mjs'
import { build } from '../build.mjs'

const DIST = path.join(webDir, 'dist')
const BUDGET_GZIP_BYTES = 250_000
const STALE = 'web/dist is stale: run `npm run build --prefix web` and commit web/dist'

it('web/dist is exactly what the sources build to', { timeout: 60_000 }, async (t) => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'quire-web-build-'))
  try {
    const sizes = await build({ outdir: tmp, quiet: true })
    const fresh = (await readdir(tmp)).sort()
    const committed = (await readdir(DIST).catch(() => [])).sort()
    assert.deepEqual(committed, fresh, `${STALE} (files differ)`)
    for (const name of fresh) {
      const a = await readFile(path.join(DIST, name))
      const b = await readFile(path.join(tmp, name))
      if (name.endsWith('.gz')) {
        // gzip bytes depend on node's zlib: compare what they unzip to.
        const sibling = await readFile(path.join(DIST, name.slice(0, -3)))
        assert.ok(gunzipSync(a).equals(sibling), `${STALE} (${name} does not unzip to ${name.slice(0, -3)})`)
        assert.ok(gunzipSync(b).equals(sibling), `${STALE} (${name})`)
      } else {
        assert.ok(a.equals(b), `${STALE} (${name} differs: ${a.length} bytes committed, ${b.length} built)`)
      }
    }
    const kb = (n) => `${(n / 1000).toFixed(1)} kB`
    const summary = `bundle: app.js ${kb(sizes.js)}, ${kb(sizes.jsGzip)} gzipped (budget ${kb(BUDGET_GZIP_BYTES)}); app.css ${kb(sizes.css)}, ${kb(sizes.cssGzip)} gzipped`
    t.diagnostic(summary)
    console.log(summary)
    assert.ok(sizes.jsGzip <= BUDGET_GZIP_BYTES, `the JavaScript is over its budget: ${summary}`)
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
})

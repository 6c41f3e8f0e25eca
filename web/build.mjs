#!/usr/bin/env node
// Builds quire's browser client into web/dist (or the directory given with --outdir):
// app.js and app.css (esbuild: one minified ES module and its stylesheet) with gzipped copies,
// boot.js (opens the document's socket early), index.html (asset URLs carry a CRC-32 of the
// file, which quire-server checks to serve them as immutable) and favicon.svg. The output depends only on the sources and the pinned packages, byte for byte:
// test/bundle.test.mjs rebuilds it and fails when web/dist is stale.
//
//   npm run build --prefix web            # writes web/dist
//   node web/build.mjs --outdir /tmp/x    # somewhere else

import * as esbuild from 'esbuild'
import { crc32, gzipSync } from 'node:zlib'
import { mkdir, readFile, rm, writeFile, copyFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const webDir = path.dirname(fileURLToPath(import.meta.url))

function parseArgs (argv) {
  const opts = { outdir: path.join(webDir, 'dist'), quiet: false }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--outdir') opts.outdir = path.resolve(argv[++i])
    else if (argv[i] === '--quiet') opts.quiet = true
    else throw new Error(`unknown argument ${argv[i]} (usage: node build.mjs [--outdir DIR] [--quiet])`)
  }
  return opts
}

export async function build ({ outdir, quiet = false }) {
  await rm(outdir, { recursive: true, force: true })
  await mkdir(outdir, { recursive: true })
  await esbuild.build({
    absWorkingDir: webDir,
    entryPoints: { app: 'src/main.js' },
    outdir,
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    legalComments: 'eof',
    sourcemap: false,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning'
  })
  // boot.js opens the document's socket before app.js has loaded: a classic script of its own.
  await esbuild.build({
    absWorkingDir: webDir,
    entryPoints: { boot: 'src/boot.js' },
    outdir,
    bundle: false,
    minify: true,
    target: ['es2015'],
    logLevel: 'warning'
  })
  await copyFile(path.join(webDir, 'src/favicon.svg'), path.join(outdir, 'favicon.svg'))
  const version = async (name) => crc32(await readFile(path.join(outdir, name))).toString(16).padStart(8, '0')
  const html = (await readFile(path.join(webDir, 'src/index.html'), 'utf8'))
    .replace('%APP_JS_V%', await version('app.js'))
    .replace('%APP_CSS_V%', await version('app.css'))
    .replace('%BOOT_JS_V%', await version('boot.js'))
    .replace('%FAVICON_V%', await version('favicon.svg'))
  await writeFile(path.join(outdir, 'index.html'), html)
  // Precompressed copies, served to clients that accept gzip: no compression work per request.
  // (Their bytes depend on node's zlib; the staleness test checks that they unzip to their
  // siblings rather than comparing them byte for byte.)
  const js = await readFile(path.join(outdir, 'app.js'))
  const css = await readFile(path.join(outdir, 'app.css'))
  const jsGz = gzipSync(js, { level: 9 })
  const cssGz = gzipSync(css, { level: 9 })
  await writeFile(path.join(outdir, 'app.js.gz'), jsGz)
  await writeFile(path.join(outdir, 'app.css.gz'), cssGz)
  const sizes = { js: js.length, jsGzip: jsGz.length, css: css.length, cssGzip: cssGz.length }
  if (!quiet) {
    const kb = (n) => `${(n / 1000).toFixed(1)} kB`
    console.log(`built ${path.relative(process.cwd(), outdir) || '.'}: app.js ${kb(sizes.js)} (${kb(sizes.jsGzip)} gzipped), app.css ${kb(sizes.css)} (${kb(sizes.cssGzip)} gzipped)`)
  }
  return sizes
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  build(parseArgs(process.argv.slice(2))).catch((err) => {
    console.error(err.message ?? err)
    process.exit(1)
  })
}

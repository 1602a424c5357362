// Runs binaryen's `wasm-opt -ttf` (translate random bytes into a valid module) over many inputs in
// ONE process: loading the 10 MB emscripten build costs ~0.3 s, so the CLI's main is called once
// per module instead of starting a process per module.
//
// usage: node ttf-generate.cjs <wasm-opt path> <json: {"features": [...], "jobs": [[input, output], ...]}>

'use strict';

const fs = require('node:fs');
const path = require('node:path');

const [wasmOpt, spec] = process.argv.slice(2);
const { features, jobs } = JSON.parse(spec);

let src = fs.readFileSync(wasmOpt, 'utf8');
if (src.startsWith('#!')) src = `//${src}`;
// The emscripten glue reads its arguments from process.argv when it loads; give it none.
process.argv = [process.argv[0], 'wasm-opt'];
const load = new Function(
  'require',
  'module',
  '__filename',
  '__dirname',
  `${src}\n;return { callMain, Module, onReady(cb) { Module.onRuntimeInitialized = cb; } };`,
);
const api = load(require, { exports: {} }, wasmOpt, path.dirname(wasmOpt));
api.Module.noInitialRun = true;
api.onReady(() => {
  for (const [input, output] of jobs) {
    api.callMain([input, '-ttf', ...features, '-o', output]);
    if (!fs.existsSync(output)) {
      process.stderr.write(`wasm-opt produced no output for ${input}\n`);
      process.exit(1);
    }
  }
  process.exit(0);
});

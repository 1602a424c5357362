// Times unmetered runs of the guest programs directly in this Node process
// (no service, no metering). Used to pick "args" / "smallArgs" in
// programs.json.
//
//   node measure.mjs                  every program at its args and smallArgs
//   node measure.mjs <name> <N>...    one program at the given N values
//
// For each N, a fresh instance is created and run(N) is called 6 times; the
// first call is reported separately (it can run in V8's baseline tier,
// Liftoff, since wasm functions tier up to TurboFan only for later calls),
// then the median of the remaining 5.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const dir = path.dirname(fileURLToPath(import.meta.url));
const REPS = 6;

function time(file, n) {
  const mod = new WebAssembly.Module(fs.readFileSync(path.join(dir, file)));
  const { run } = new WebAssembly.Instance(mod, {}).exports;
  const times = [];
  let result;
  for (let r = 0; r < REPS; r++) {
    const t0 = process.hrtime.bigint();
    result = run(n);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const first = times[0];
  const rest = times.slice(1).sort((a, b) => a - b);
  return { result: String(result), first, median: rest[Math.floor(rest.length / 2)] };
}

function report(name, file, n) {
  const { result, first, median } = time(file, n);
  console.log(
    `${name.padEnd(8)} N=${String(n).padEnd(9)} first ${first.toFixed(1).padStart(7)} ms` +
      `  median ${median.toFixed(1).padStart(7)} ms  result ${result}`,
  );
}

const [name, ...ns] = process.argv.slice(2);
if (name) {
  for (const n of ns) report(name, `${name}.wasm`, Number(n));
} else {
  const list = JSON.parse(fs.readFileSync(path.join(dir, "programs.json"), "utf8"));
  for (const p of list) {
    report(p.name, p.file, p.smallArgs[0]);
    report(p.name, p.file, p.args[0]);
  }
}

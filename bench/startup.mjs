#!/usr/bin/env node
// Start-up of the compiled `specformer` command, side by side with `node -e 0` in one run:
// `--help`, `spec softmax`, and `verify` of the reference on one formula (its wall time minus
// the checking time the report states is the command's overhead). Needs `npm run build` first.
// Usage: node bench/startup.mjs [--runs N]   (or npm run bench -- --only cli-startup)
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = fileURLToPath(new URL("../bin/specformer.mjs", import.meta.url));
if (!existsSync(new URL("../dist/cli/main.js", import.meta.url))) {
  console.error("bench/startup.mjs: dist/ is missing: run `npm run build` first");
  process.exit(2);
}
const runsArg = process.argv.indexOf("--runs");
const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 7;
if (!Number.isInteger(runs) || runs < 1) {
  console.error(
    `bench/startup.mjs: --runs must be a positive integer, got "${process.argv[runsArg + 1]}"`,
  );
  process.exit(2);
}
const env = { ...process.env, SPECFORMER_SOURCE: "" };

function time(args) {
  const t = process.hrtime.bigint();
  let out = "";
  try {
    out = execFileSync(process.execPath, args, {
      cwd: root,
      env,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch (e) {
    out = e.stdout ?? "";
  }
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, out };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const rows = [];
const cases = [
  ["node -e 0", ["-e", "0"]],
  ["specformer --help", [bin, "--help"]],
  ["specformer --version", [bin, "--version"]],
  ["specformer spec softmax", [bin, "spec", "softmax"]],
];
// interleaved, so a change of load on the machine hits every case alike
const samples = cases.map(() => []);
for (let r = 0; r < runs; r++) cases.forEach(([, args], i) => samples[i].push(time(args).ms));
cases.forEach(([name], i) => rows.push({ name, ms: median(samples[i]) }));

const verifyArgs = [bin, "verify", "--formulas", "softmax", "--json"];
const verifySamples = [];
for (let r = 0; r < Math.max(3, Math.ceil(runs / 2)); r++) {
  const { ms, out } = time(verifyArgs);
  const checking = JSON.parse(out).time_ms;
  verifySamples.push({ ms, checking, overhead: ms - checking });
}
const v = verifySamples.sort((a, b) => a.overhead - b.overhead)[
  Math.floor(verifySamples.length / 2)
];

const node = rows[0].ms;
console.log(
  `start-up, median of ${runs} interleaved runs (verify: ${verifySamples.length}), node ${process.version}`,
);
for (const r of rows)
  console.log(
    `${r.name.padEnd(26)} ${r.ms.toFixed(0).padStart(6)} ms   ${(r.ms / node).toFixed(2)}× node`,
  );
console.log(
  `${"specformer verify softmax".padEnd(26)} ` +
    `${v.ms.toFixed(0).padStart(6)} ms   checks ${v.checking.toFixed(0)} ms, ` +
    `overhead ${v.overhead.toFixed(0)} ms`,
);

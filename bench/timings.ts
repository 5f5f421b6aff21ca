/**
 * Timings that used to be bounds in unit tests (flaky on a loaded machine), measured here instead:
 * loading GPT-2's BPE ranks, encoding 100 kB of English and a 100,000-byte pre-token, the
 * protocol's tensor JSON encode/decode throughput, and a 10 MB tensor through a Node echo
 * program. Prints medians; the unit tests keep the correctness of the same work.
 * Usage: tsx bench/timings.ts [--runs N]   (or npm run bench -- --only timings)
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parkMiller } from "../autodiff/random.js";
import { Tensor } from "../autodiff/tensor.js";
import { loadGpt2Model } from "../reference/tokenizer/gpt2.js";
import { Tokenizer } from "../reference/tokenizer/index.js";
import { encodeTensor, tensorFromJSON } from "../verify/protocol.js";
import { ProcessImplementation } from "../verify/process.js";

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timeIt(runs: number, f: () => unknown): Promise<number> {
  const ms: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await f();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

export async function runTimings(runs = 5): Promise<string[]> {
  const lines = [
    `timings, median of ${runs} runs, node ${process.version}, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  ];
  const row = (what: string, ms: number, extra = "") =>
    lines.push(`${what.padEnd(60)} ${ms.toFixed(0).padStart(6)} ms${extra}`);
  row(
    "GPT-2 BPE: load the ranks (bound was 1 s)",
    await timeIt(runs, () => new Tokenizer(loadGpt2Model())),
  );
  const gpt2 = Tokenizer.gpt2();
  const corpus = readFileSync(
    new URL("../reference/data/corpus.txt", import.meta.url),
    "utf8",
  ).slice(0, 100_000);
  row(
    "GPT-2 BPE: encode 100 kB of English, cold cache (1 s)",
    await timeIt(runs, () => Tokenizer.fromJSON(gpt2.toJSON()).encode(corpus)),
  );
  row(
    "GPT-2 BPE: encode a 100,000-byte pre-token (1 s)",
    await timeIt(runs, () => Tokenizer.fromJSON(gpt2.toJSON()).encode("a".repeat(100_000))),
  );

  const n = 1_250_000;
  // 1.25 M values over seven decades, from a fixed sequence
  const data = Float64Array.from(parkMiller(n, 7), (u, i) => (u - 0.5) * 10 ** ((i % 7) - 3));
  const x = new Tensor("f64", [n], data);
  const text = encodeTensor(x);
  const mbps = (ms: number) => `  = ${((n * 8) / 1e6 / (ms / 1000)).toFixed(0)} MB/s of float64`;
  const enc = await timeIt(runs, () => encodeTensor(x));
  row("protocol: encode 10 MB of float64 as JSON (3 s)", enc, mbps(enc));
  const dec = await timeIt(runs, () => tensorFromJSON(JSON.parse(text), "bench"));
  row("protocol: JSON.parse + validate 10 MB of float64 (3 s)", dec, mbps(dec));
  const withNaN = new Tensor(
    "f64",
    [n],
    Float64Array.from(data, (v, i) => (i === n >> 1 ? NaN : v)),
  );
  const encNaN = await timeIt(runs, () => encodeTensor(withNaN));
  row("protocol: encode with a NaN, per-element path (4 s)", encNaN, mbps(encNaN));

  const echo = fileURLToPath(new URL("../verify/fixtures/echo.mjs", import.meta.url));
  const impl = await ProcessImplementation.start(
    `${JSON.stringify(process.execPath)} ${JSON.stringify(echo)}`,
    { timeoutMs: 60_000 },
  );
  try {
    const y = new Tensor("f64", [1000, 1250], data);
    row(
      "process: 10 MB round trip through a Node echo program (8 s)",
      await timeIt(runs, () => impl.forward({ formula: "identity", config: {}, inputs: { x: y } })),
    );
  } finally {
    await impl.close();
  }
  return lines;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const at = process.argv.indexOf("--runs");
  const runs = at > 0 ? Number(process.argv[at + 1]) : 5;
  if (!Number.isInteger(runs) || runs < 1) {
    process.stderr.write(
      `bench/timings.ts: --runs must be a positive integer, got "${process.argv[at + 1]}"\n`,
    );
    process.exit(2);
  }
  for (const l of await runTimings(runs)) process.stdout.write(`${l}\n`);
}

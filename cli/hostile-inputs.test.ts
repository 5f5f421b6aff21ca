/**
 * Hostile input as users give it: each case runs the `specformer` command (in process through
 * `main`, and one as a child process) and must end with exit code 2 and a message naming what was
 * wrong, with no stack trace.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import type { Io } from "./io.js";
import { main } from "./main.js";

const BIN = join(__dirname, "..", "bin", "specformer.mjs");
const TINY = join(__dirname, "..", "golden", "checkpoints", "tiny-gpt2");

function run(args: string[]): { code: number; out: string; err: string; ms: number } {
  const start = performance.now();
  try {
    const out = execFileSync(process.execPath, [BIN, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
    });
    return { code: 0, out, err: "", ms: performance.now() - start };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { code: x.status, out: x.stdout, err: x.stderr, ms: performance.now() - start };
  }
}

async function runInProcess(args: string[]): Promise<{ code: number; err: string }> {
  let err = "";
  const io: Io = {
    out: () => undefined,
    err: (s) => void (err += s.endsWith("\n") ? s : `${s}\n`),
    tty: false,
  };
  const code = await main(args, io);
  return { code, err };
}

const dir = mkdtempSync(join(tmpdir(), "specformer-hostile-"));
const configFolder = join(dir, "config-folder");
mkdirSync(join(configFolder, "config.json"), { recursive: true });
copyFileSync(join(TINY, "model.safetensors"), join(configFolder, "model.safetensors"));

const cases: Array<[string, string[], string]> = [
  [
    "compare /dev/zero /dev/zero",
    ["compare", "/dev/zero", "/dev/zero"],
    "specformer compare: /dev/zero: cannot read: is a character device, not " +
      "a regular file (only regular files are read)\n",
  ],
  [
    "generate --temperature 1e-310",
    ["generate", "--prompt", "hi", "--temperature", "1e-310"],
    "specformer generate: --temperature 1e-310 is below the smallest normal " +
      "number 2.2250738585072014e-308 (2^-1022), where every probability " +
      "becomes NaN; use 0 for greedy decoding\n",
  ],
  [
    "generate --weights with config.json a folder",
    ["generate", "--prompt", "hi", "--weights", configFolder],
    `specformer generate: ${join(configFolder, "config.json")}: cannot read: is a directory, not a file\n`,
  ],
  [
    "generate --preset __proto__",
    ["generate", "--prompt", "hi", "--preset", "__proto__"],
    'specformer generate: --preset: unknown preset "__proto__"; presets: tiny, seed-post-ln, gpt2-small, llama-tiny\n',
  ],
  [
    "spec --config __proto__",
    ["spec", "--config", "__proto__"],
    'specformer spec: --config: unknown preset "__proto__"; presets: tiny, seed-post-ln, gpt2-small, llama-tiny\n',
  ],
  ["spec constructor", ["spec", "constructor"], 'specformer spec: unknown formula "constructor"'],
  [
    "spec gpt --dims L=3200",
    ["spec", "gpt", "--dims", "L=3200"],
    "specformer spec: formula gpt: hyperparameter L (blocks) is 3200, above the limit of 256\n",
  ],
  [
    "spec gpt --dims L=100000",
    ["spec", "gpt", "--dims", "L=100000"],
    "specformer spec: formula gpt: hyperparameter L (blocks) is 100000, above the limit of 256\n",
  ],
  [
    "research constructor",
    ["research", "constructor"],
    'specformer research: unknown study "constructor"; studies: ' +
      "ln-placement, length-extrapolation, rank-collapse, variants, mup\n",
  ],
  [
    "research --out /proc/nope/x",
    ["research", "rank-collapse", "--quick", "--out", "/proc/nope/x"],
    "specformer research: --out /proc/nope/x: cannot write there: /proc does not accept new entries (ENOENT)\n",
  ],
];

describe("hostile input exits 2 with a clear message", () => {
  test.each(cases)("%s", async (_label, args, message) => {
    const r = await runInProcess(args);
    expect(r.code).toBe(2);
    expect(r.err.startsWith(message.replace(/^error: /, "")) || r.err.startsWith(message)).toBe(
      true,
    );
    expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
  });

  test("as a child process: compare /dev/zero /dev/zero fails at once, exit 2", () => {
    const r = run(["compare", "/dev/zero", "/dev/zero"]);
    expect(r.code).toBe(2);
    expect(r.err).toBe(cases[0]![2]);
  }, 90_000);
});

/**
 * A formula's semantics exist once, in its declaration (docs/DESIGN-NOTES.md, "Derive, don't
 * restate"): no source outside spec/ may restate the causal rule, build the sinusoidal table,
 * compute ALiBi slopes or scale attention scores by 1/√d_k itself. Other modules evaluate or
 * rewrite the formula (spec/rewrite.ts, properties/spec-values.ts). A law may state a property —
 * the output at i does not depend on keys the mask hides — but asks spec/ which keys those are.
 *
 * Not scanned: tests, and the other implementations of the model the toolkit verifies or
 * measures (examples/ adapters, bench/peers/), which restate it by nature.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SKIP_DIRS = new Set(["node_modules", "spec", "examples", "bench/peers", "docs", "python"]);

/** What a restatement looks like in code (ASCII operators: prose with ≤ and − is not code). */
const RULES: readonly { readonly name: string; readonly pattern: RegExp }[] = [
  // j ≤ i + (m − n), i + m − n + 1, j − i − (m − n): the bottom-right causal boundary
  { name: "causal offset m - n", pattern: /\bm\s*-\s*n\b|\bsubDim\(\s*m\s*,\s*n\s*\)/ },
  { name: "causal comparison le(j, i …)", pattern: /\b(le|lt)\(\s*j\s*,\s*(add\(\s*)?i\b/ },
  // i / 10000^(2k/d): the sinusoidal table (or RoPE's frequencies at the default base)
  { name: "sinusoid 10000 ** (…)", pattern: /\b10000\s*\*\*|\bpow\(\s*10000\b/ },
  // 2^(−8(h+1)/c) and the interleaved 2^(−4(2(h−c)+1)/c): ALiBi's slope schedule
  {
    name: "ALiBi slopes 2 ** (-8 …)",
    pattern: /\b2\s*\*\*\s*\(\s*\(?\s*-\s*[48]\b|\bpow\(\s*2\s*,\s*mul\(\s*-\s*[48]\b/,
  },
  // scores · 1/√d_k computed by hand
  {
    name: "attention scale 1/sqrt(d_k)",
    pattern:
      /(\bscale\b|\bscores?\b|\bdot\b|\bqk\b|matmul)[^\n]*Math\.sqrt\(([^)\n]*\b(d_k|dk)\b|[^)\n]*shape\.at\(-1\))/i,
  },
];

/** Every rule a line of code breaks, as `where: rule — line`. */
function restatements(where: string, text: string): string[] {
  const out: string[] = [];
  text.split("\n").forEach((line, i) => {
    const code = line.replace(/\/\/.*$/, "");
    if (/^\s*(\*|\/\*\*)/.test(code)) return;
    for (const r of RULES) {
      if (r.pattern.test(code)) out.push(`${where}:${i + 1}: ${r.name} — ${line.trim()}`);
    }
  });
  return out;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const rel = relative(ROOT, path);
    if (SKIP_DIRS.has(rel) || name.startsWith(".")) continue;
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (/\.ts$/.test(name) && !/\.test(-d)?\.ts$/.test(name)) out.push(path);
  }
  return out;
}

describe("formula semantics only in spec/", () => {
  test("catches each kind of restatement planted in a fixture, naming file and line", () => {
    const fixture = [
      "const hidden = o.causal && j > i + (m - n) + o.peek;",
      "const firstHiddenKey = (m: number) => Math.max(0, c.i + m - n + 1);",
      "offsets.add(j - i - (m - n));",
      'const shift = c.causal_align === "top_left" ? 0 : m - n;',
      "return where(le(j, add(i, add(dimValue(subDim(m, n)), constant(shift)))), 0, NEG_INF);",
      "const angle = (offset + i) / 10000 ** ((2 * k) / d);",
      "const angle = div(i, pow(10000, div(mul(2, half), dimValue(d))));",
      "return h < c ? 2 ** ((-8 * (h + 1)) / c) : 2 ** ((-4 * (2 * (h - c) + 1)) / c);",
      "const first = pow(2, mul(-8 / c, add(h, 1)));",
      "const scale = 1 / Math.sqrt(dk);",
      "scores = dot / Math.sqrt(d_k);",
      "const y = attention(Q, K, V, { scale: 1 / Math.sqrt(Q!.shape.at(-1)!) });",
    ].join("\n");
    const found = restatements("fixture.ts", fixture);
    expect(found.map((f) => f.split(" — ")[0])).toEqual([
      "fixture.ts:1: causal offset m - n",
      "fixture.ts:2: causal offset m - n",
      "fixture.ts:3: causal offset m - n",
      "fixture.ts:4: causal offset m - n",
      "fixture.ts:5: causal offset m - n",
      "fixture.ts:5: causal comparison le(j, i …)",
      "fixture.ts:6: sinusoid 10000 ** (…)",
      "fixture.ts:7: sinusoid 10000 ** (…)",
      "fixture.ts:8: ALiBi slopes 2 ** (-8 …)",
      "fixture.ts:9: ALiBi slopes 2 ** (-8 …)",
      "fixture.ts:10: attention scale 1/sqrt(d_k)",
      "fixture.ts:11: attention scale 1/sqrt(d_k)",
      "fixture.ts:12: attention scale 1/sqrt(d_k)",
    ]);
  });

  test("prose, comments and unrelated arithmetic are not restatements", () => {
    const fine = [
      'const msg = "query i sees keys j ≤ i + m − n (bottom-right)";',
      "// keys j <= i + (m - n) are visible",
      " * p[i, 2k] = sin(i / 10000 ** (2k/d))",
      "const b = Math.sqrt(3 / fanIn);",
      "const bytes = n / 2 ** 20;",
      "const rope = { base: 10000 };",
    ].join("\n");
    expect(restatements("fine.ts", fine)).toEqual([]);
  });

  test("no source outside spec/ restates them", () => {
    const files = sources(ROOT);
    expect(files.length).toBeGreaterThan(50);
    const found = files.flatMap((f) => restatements(relative(ROOT, f), readFileSync(f, "utf8")));
    expect(found).toEqual([]);
  });
});

/**
 * "Derive, don't restate" (docs/DESIGN.md, decision 9), checked: no source file outside the
 * declarations lists formula names or hyperparameter keys by hand. A hand list is an array
 * literal (a `Set` or `new Map` of one included) or the cases of a `switch` whose string literals
 * are either
 * - two or more hyperparameter keys of one formula, at least one of them not a dim (a shape such
 *   as `["n", "d_model"]` lists dims, not keys), e.g. `["H", "eps", "causal"]`; or
 * - two or more formula names making up a group the registry already defines (every formula of
 *   one category: `["block", "block_post_ln", "block_pre_ln"]`), or half the registry or more (a
 *   copy of it, perhaps one that has drifted as formulas were added).
 * A list mixing in other strings (CSV columns, command-line options) is not a restatement, nor is
 * a single key looked up. Type-level checks of the derived configuration types sit in
 * spec/types.test-d.ts.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, test } from "vitest";
import "./index.js";
import { formulaNames, getFormula, resolveConfig, FormulaError } from "./formula.js";
import { hyperKeys, resolveConfigOf } from "./configs.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The declarations themselves: the only place names and keys are written. */
const DECLARATIONS = ["spec/formula.ts", "spec/formulas/core.ts", "spec/formulas/model.ts"];

/**
 * Hand lists that stay, each with why. Matched by file and the list's text, so a second list in
 * the same file is still caught.
 */
const ALLOWED: readonly { file: string; list: string; why: string }[] = [
  {
    file: "examples/tfjs/adapter.ts",
    list: "",
    why:
      "an independent port's capability declaration: what it supports is its own claim, not " +
      "the registry's",
  },
];

interface Hit {
  readonly file: string;
  readonly line: number;
  readonly text: string;
}

/** The registry's vocabulary: keys per formula, dim keys, formula groups. */
function vocabulary() {
  const names = formulaNames();
  const keysOf = new Map(names.map((n) => [n, new Set(getFormula(n).hyper.map((h) => h.name))]));
  const dimsOf = (n: string) =>
    getFormula(n)
      .hyper.filter((h) => h.dim === true)
      .map((h) => h.name);
  const dims = new Set(names.flatMap(dimsOf));
  const groups = [names, ...new Set(names.map((n) => getFormula(n).category))].map((g) =>
    typeof g === "string" ? names.filter((n) => getFormula(n).category === g) : g,
  );
  return { names: new Set(names), keysOf, dims, groups: groups.map((g) => new Set(g)) };
}

/** Hand lists of formula names or hyperparameter keys in one source text. */
export function handLists(file: string, text: string, v = vocabulary()): Hit[] {
  const src = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const hits: Hit[] = [];
  const isKeyList = (lits: readonly string[]) =>
    lits.length >= 2 &&
    lits.some((l) => !v.dims.has(l)) &&
    [...v.keysOf.values()].some((keys) => lits.every((l) => keys.has(l)));
  const isNameGroup = (lits: readonly string[]) => {
    const set = new Set(lits);
    if (lits.length < 2 || !lits.every((l) => v.names.has(l))) return false;
    // a copy of a group, or of most of the registry (a copy that has drifted: formulas added since)
    const isGroup = (g: ReadonlySet<string>) =>
      g.size === set.size && [...g].every((n) => set.has(n));
    return set.size * 2 >= v.names.size || v.groups.some(isGroup);
  };
  const visit = (node: ts.Node): void => {
    let lits: string[] | undefined;
    if (ts.isArrayLiteralExpression(node)) {
      lits = node.elements.filter(ts.isStringLiteralLike).map((e) => e.text);
    }
    if (ts.isSwitchStatement(node)) {
      const cases = node.caseBlock.clauses.filter(ts.isCaseClause).map((c) => c.expression);
      lits = cases.filter(ts.isStringLiteralLike).map((e) => e.text);
    }
    if (lits !== undefined && (isKeyList(lits) || isNameGroup(lits))) {
      const line = src.getLineAndCharacterOfPosition(node.getStart(src)).line + 1;
      hits.push({ file, line, text: node.getText(src).slice(0, 160) });
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
  return hits;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    if (e === "node_modules" || e === "dist" || e === "fixtures" || e.startsWith(".")) continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (/\.ts$/.test(e) && !/\.test(-d)?\.ts$/.test(e) && !e.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

describe("no hand-listed formula names or hyperparameter keys", () => {
  test("outside the declarations, every source file derives them from the registry", () => {
    const v = vocabulary();
    const all = sourceFiles(root)
      .map((p) => relative(root, p))
      .filter((f) => !DECLARATIONS.includes(f))
      .flatMap((f) => handLists(f, readFileSync(join(root, f), "utf8"), v));
    const allowed = (a: (typeof ALLOWED)[number], h: Hit) =>
      a.file === h.file && h.text.includes(a.list);
    const found = all.filter((h) => !ALLOWED.some((a) => allowed(a, h)));
    expect(found.map((h) => `${h.file}:${h.line}: ${h.text}`)).toEqual([]);
    // an allowance nothing needs any more is removed, so the list stays short and current
    expect(ALLOWED.filter((a) => !all.some((h) => allowed(a, h))).map((a) => a.file)).toEqual([]);
  }, 120_000);

  test("a planted hand list is caught, with its line", () => {
    const fixture = [
      'const BLOCK_KEYS = ["H", "H_kv", "eps", "causal"] as const;',
      "const x = 1;",
      'const BLOCKS = new Set(["block_pre_ln", "block", "block_post_ln"]);',
      "function f(k: string) {",
      "  switch (k) {",
      '    case "eps": return 1;',
      '    case "bias": return 2;',
      "  }",
      "}",
      `const ALL = ${JSON.stringify(formulaNames())};`,
      `const MOST = ${JSON.stringify(formulaNames().slice(2))};`,
    ].join("\n");
    expect(handLists("fixture.ts", fixture).map((h) => h.line)).toEqual([1, 3, 5, 10, 11]);
  });

  test("legitimate uses are not hand lists", () => {
    const fixture = [
      'const eps = cfg["eps"];', // one key looked up
      'const x = input("x", ["...", "n", "d_model"]);', // a shape lists dims
      'const cols = ["d_model", "H", "L", "batch", "seeds"];', // CSV columns: not only keys
      'const subject = ["layer_norm", "rms_norm"];', // a law's subject: not a registry group
      'const keys = hyperKeys("block");', // derived
      "// the keys H, eps and causal of block", // docs
    ].join("\n");
    expect(handLists("fixture.ts", fixture)).toEqual([]);
  });
});

describe("hyperparameters derived from the declarations", () => {
  test("key lists come from the declarations, in order", () => {
    expect(hyperKeys("layer_norm")).toEqual(getFormula("layer_norm").hyper.map((h) => h.name));
    expect(hyperKeys("block_pre_ln")).not.toContain("placement");
  });

  test("an unknown key names the formula, the key and the closest known key", () => {
    expect(() => resolveConfig(getFormula("attention"), { causl: false })).toThrow(
      /^formula attention has no hyperparameter "causl" \(did you mean "causal"\?\); it takes /,
    );
    expect(() => resolveConfig(getFormula("layer_norm"), { zzzzzz: 1 })).toThrow(
      /^formula layer_norm has no hyperparameter "zzzzzz"; it takes eps, bias, normalized_axes$/,
    );
  });

  test("a wrong type names the key, the expected type and the value", () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["layer_norm", { eps: "small" }, /hyperparameter eps must be a finite number, got "small"/],
      ["attention", { causal: 1 }, /hyperparameter causal must be true or false, got 1/],
      [
        "attention",
        { causal_align: "left" },
        /hyperparameter causal_align must be one of bottom_right, top_left, got "left"/,
      ],
      ["block", { window: 1.5 }, /hyperparameter window must be a non-negative integer, got 1.5/],
      ["split_heads", { H: -2 }, /hyperparameter H must be a non-negative integer, got -2/],
    ];
    for (const [f, cfg, msg] of cases) {
      expect(() => resolveConfigOf(f as "layer_norm", cfg as never)).toThrow(FormulaError);
      expect(() => resolveConfigOf(f as "layer_norm", cfg as never)).toThrow(msg);
    }
  });

  test("resolution fills declared defaults", () => {
    const c = resolveConfigOf("layer_norm", {});
    expect(c).toEqual({ eps: 1e-5, bias: true, normalized_axes: 1 });
  });
});

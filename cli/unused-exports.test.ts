/**
 * No unused exports: every name a module exports is referenced by another module of the tree
 * (sources, tests, bench/, examples/), or is part of the public API (index.ts re-exports it).
 * A reference from a test counts, its own test included (`x.test.ts` for `x.ts`): a test is a
 * consumer of the module's contract (a unit of a parser checked on its own, say), as in knip's
 * and ts-prune's defaults.
 *
 * References are found with the TypeScript checker, so static imports, `import type`, re-exports
 * (`export { x } from`, each link of the chain counts) and members of a dynamic `import()` (read
 * as `mod.x` or destructured) all count. Entry points run by name rather than imported
 * (`bin/specformer.mjs` loads cli/main.ts's `main`) are listed in ENTRIES.
 *
 * Only values are checked (functions, classes, constants): an exported interface or type alias
 * often names a part of an exported signature (a function's options, a result), which callers may
 * need to write down even where no module of the tree does.
 */
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import ts from "typescript";
import { describe, expect, test } from "vitest";

const ROOT = join(__dirname, "..");
const FOLDERS = [
  "spec",
  "autodiff",
  "io",
  "reference",
  "golden",
  "properties",
  "verify",
  "cli",
  "research",
  "bench",
  "examples",
];
/** Exports used by being run, not imported: file (relative to the root) → names. */
const ENTRIES: Readonly<Record<string, readonly string[]>> = {
  "cli/main.ts": ["main"], // bin/specformer.mjs imports it by URL
};

/** Every .ts file below `dir`, fixtures and declaration files left out. */
function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "fixtures" && e.name !== "node_modules" && e.name !== "dist") {
        out.push(...sourceFiles(p));
      }
    } else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** `dir/x.ts` for `dir/x.test.ts` and `dir/x.test-d.ts`; undefined for other files. */
function testedModule(file: string): string | undefined {
  const m = /^(.*)\.test(?:-d)?\.ts$/.exec(file);
  return m === null ? undefined : `${m[1]}.ts`;
}

/**
 * The exports of `files` that no other file references, as `file: name` (file relative to
 * `root`), sorted. `index` (relative), when given, is the public entry point: its own exports are
 * never reported.
 */
function unusedExports(
  root: string,
  files: readonly string[],
  opts: { index?: string; entries?: Readonly<Record<string, readonly string[]>> } = {},
): string[] {
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
    skipLibCheck: true,
    types: ["node"],
  });
  const checker = program.getTypeChecker();
  const rel = (sf: ts.SourceFile): string => relative(root, sf.fileName);
  const ours = program
    .getSourceFiles()
    .filter((sf) => !sf.isDeclarationFile && files.includes(sf.fileName));

  // the exports to account for: symbols declared (or re-exported by name) in each file
  const declaredIn = new Map<ts.Symbol, { file: string; name: string }>();
  for (const sf of ours) {
    const file = rel(sf);
    if (file === opts.index || testedModule(file) !== undefined) continue;
    const moduleSymbol = checker.getSymbolAtLocation(sf);
    if (moduleSymbol === undefined) continue;
    for (const exported of checker.getExportsOfModule(moduleSymbol)) {
      // `export * from` brings in symbols declared elsewhere: they are accounted for there
      const here = (exported.declarations ?? []).some((d) => d.getSourceFile() === sf);
      if (!here || (opts.entries?.[file] ?? []).includes(exported.name)) continue;
      const target =
        exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      if (!(target.flags & ts.SymbolFlags.Value)) continue; // types: see the header
      declaredIn.set(exported, { file, name: exported.name });
    }
  }

  const used = new Set<ts.Symbol>();
  /** Mark `s` and every alias it leads through as used from `from`. */
  const mark = (s: ts.Symbol | undefined, from: string): void => {
    for (let at = s, hops = 0; at !== undefined && hops < 32; hops++) {
      const owner = declaredIn.get(at);
      if (owner !== undefined && owner.file !== from) {
        used.add(at);
      }
      if (!(at.flags & ts.SymbolFlags.Alias)) break;
      at = checker.getImmediateAliasedSymbol(at);
    }
  };
  for (const sf of ours) {
    const from = rel(sf);
    const visit = (node: ts.Node): void => {
      if (ts.isIdentifier(node)) mark(checker.getSymbolAtLocation(node), from);
      // `import type * as core from "./m.js"`, then `typeof core[keyof typeof core]`: every
      // export of the module is read through the namespace (spec/configs.ts derives the
      // formulas' configurations so), so a namespace import counts as a use of each
      // `export * as typed from "./typed.js"` (index.ts): each export is public as `typed.x`
      if (
        ts.isExportDeclaration(node) &&
        node.exportClause !== undefined &&
        ts.isNamespaceExport(node.exportClause) &&
        node.moduleSpecifier !== undefined
      ) {
        const ns = checker.getSymbolAtLocation(node.moduleSpecifier);
        if (ns !== undefined) for (const e of checker.getExportsOfModule(ns)) mark(e, from);
      }
      if (ts.isNamespaceImport(node) && ts.isImportDeclaration(node.parent.parent)) {
        const ns = checker.getSymbolAtLocation(node.parent.parent.moduleSpecifier);
        if (ns !== undefined) for (const e of checker.getExportsOfModule(ns)) mark(e, from);
      }
      // `const { x } = await import("./m.js")`: x names the module's export, not a local
      if (ts.isBindingElement(node) && ts.isObjectBindingPattern(node.parent)) {
        const key = node.propertyName ?? node.name;
        if (ts.isIdentifier(key)) {
          const property = checker.getTypeAtLocation(node.parent).getProperty(key.text);
          mark(property, from);
        }
      }
      ts.forEachChild(node, visit);
    };
    visit(sf);
  }
  return [...declaredIn]
    .filter(([s]) => !used.has(s))
    .map(([, { file, name }]) => `${file}: ${name}`)
    .sort();
}

describe("unused exports", () => {
  test("the check finds planted unused exports: unreferenced, or used only inside their own file", () => {
    const dir = mkdtempSync(join(tmpdir(), "unused-exports-"));
    const write = (name: string, text: string): string => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const files = [
      write(
        "a.ts",
        [
          "export const used = 1;",
          "export const unused = 2;",
          "export function onlyTested(): number { return 3; }",
          "export type UsedType = number;",
          "export interface UnusedType { x: number }",
          "export class UnusedClass {}",
          "export const lazy = 4;",
          "export const alsoLazy = 5;",
          "export const inFileOnly = 6;",
          "export const run = (): number => inFileOnly;",
        ].join("\n"),
      ),
      write("a.test.ts", 'import { onlyTested } from "./a.js";\nexport const t = onlyTested();\n'),
      write(
        "b.ts",
        [
          'import { used, type UsedType } from "./a.js";',
          'export { unused as renamed } from "./a.js";',
          "export const v: UsedType = used;",
          "export async function f(): Promise<number> {",
          '  const m = await import("./a.js");',
          '  const { alsoLazy } = await import("./a.js");',
          "  return m.lazy + alsoLazy;",
          "}",
        ].join("\n"),
      ),
      write("index.ts", 'export { v, f } from "./b.js";\n'),
    ];
    write("package.json", JSON.stringify({ type: "module" }));
    const found = unusedExports(dir, files, { index: "index.ts", entries: { "a.ts": ["run"] } });
    // `unused` is re-exported by b.ts (so a.ts's export is used), but nobody uses b's `renamed`
    expect(found).toEqual(["a.ts: UnusedClass", "a.ts: inFileOnly", "b.ts: renamed"]);
  }, 60_000);

  test("no module of the tree exports a value nobody else uses", () => {
    const files = [join(ROOT, "index.ts"), ...FOLDERS.flatMap((f) => sourceFiles(join(ROOT, f)))];
    const found = unusedExports(ROOT, files, { index: "index.ts", entries: ENTRIES });
    if (process.env["UNUSED_EXPORTS_LIST"] !== undefined) {
      writeFileSync(process.env["UNUSED_EXPORTS_LIST"], found.join("\n") + "\n");
    }
    // each line names the file and the export: delete it, or drop `export` if the file uses it
    expect(found).toEqual([]);
  }, 300_000);
});

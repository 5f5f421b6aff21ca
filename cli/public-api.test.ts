/**
 * Every name the package exports (index.ts, the `specformer` entry point) carries a TSDoc comment
 * at its declaration: an editor's hover and the emitted .d.ts explain it. A group comment on an
 * `export { … } from` line in index.ts does not count: the declaration itself must say what it is.
 */
import { join } from "node:path";
import ts from "typescript";
import { describe, expect, test } from "vitest";

const ROOT = join(__dirname, "..");

/** The exported names of index.ts whose declarations have no documentation comment. */
function undocumentedExports(): { names: string[]; checked: number } {
  const entry = join(ROOT, "index.ts");
  const program = ts.createProgram([entry], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
    skipLibCheck: true,
    allowJs: false,
  });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(entry)!;
  const moduleSymbol = checker.getSymbolAtLocation(source)!;
  const names: string[] = [];
  let checked = 0;
  for (const exported of checker.getExportsOfModule(moduleSymbol)) {
    const symbol =
      exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    // a namespace re-export (`export * as typed`) is documented by its module's own comment
    if (symbol.flags & ts.SymbolFlags.ValueModule) continue;
    checked++;
    const documented = (symbol.declarations ?? []).some((d) => {
      // a variable's comment sits on its statement; a class member's or function's on itself
      const node = ts.isVariableDeclaration(d) ? d.parent.parent : d;
      return ts.getJSDocCommentsAndTags(node).length > 0;
    });
    if (!documented) names.push(exported.name);
  }
  return { names: names.sort(), checked };
}

describe("the public API", () => {
  test("every export of the entry point has a TSDoc comment at its declaration", () => {
    const { names, checked } = undocumentedExports();
    expect(checked).toBeGreaterThan(50);
    expect(names).toEqual([]);
  }, 120_000);
});

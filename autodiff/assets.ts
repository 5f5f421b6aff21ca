/**
 * Files the package ships beside its code (the golden cases, the GPT-2 ranks, the corpus), found
 * from the package root, so the same lookup works from the TypeScript sources, from the compiled
 * `dist/`, and from an installed copy under `node_modules/specformer`.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let root: string | undefined;

/** The folder holding specformer's package.json (the first one above this module). */
export function packageRoot(): string {
  if (root !== undefined) return root;
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === "specformer"
    )
      return (root = dir);
    if (dirname(dir) === dir)
      throw new Error(
        `specformer's package.json was not found in any folder above ${start}: the package is incomplete`,
      );
  }
}

/** A path inside the package, e.g. `packageFile("golden", "cases")`. */
export function packageFile(...parts: string[]): string {
  return join(packageRoot(), ...parts);
}

/** specformer's version, from its package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(packageFile("package.json"), "utf8")) as { version: string })
    .version;
}

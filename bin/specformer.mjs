#!/usr/bin/env node
// The `specformer` command runs the compiled JavaScript in dist/ (built by `npm run build`, which
// `prepare` runs on `npm install`/`npm ci` of a checkout and `npm pack` runs before packing).
// In a checkout, SPECFORMER_SOURCE=1 runs the TypeScript sources through tsx instead (a dev
// dependency): the tests do this so that they never test a stale build.
import { existsSync } from "node:fs";

const compiled = new URL("../dist/cli/main.js", import.meta.url);
const sources = new URL("../cli/main.ts", import.meta.url);
let main;
if (process.env.SPECFORMER_SOURCE === "1" && existsSync(sources)) {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import(sources.href));
} else if (existsSync(compiled)) {
  ({ main } = await import(compiled.href));
} else {
  process.stderr.write(
    "specformer: dist/ is missing: run `npm run build` in this checkout (or " +
      "set SPECFORMER_SOURCE=1 to run the sources through tsx)\n",
  );
  process.exit(2);
}
process.exitCode = await main(process.argv.slice(2));

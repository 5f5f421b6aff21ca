import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "{spec,autodiff,io,reference,golden,properties,verify,cli,research,bench,examples}/**/*.test.ts",
    ],
    // The type tests (*.test-d.ts: expectTypeOf and @ts-expect-error lines) are checked by
    // `npm run typecheck` (tsconfig.json includes them), which `npm test` runs first; vitest's own
    // typecheck pass ran tsc over the same program a second time (≈ 14 s). `npm run test:types`
    // still runs them as vitest reports them.
    typecheck: {
      enabled: false,
      include: ["{spec,autodiff,reference,golden,properties,verify,cli,research}/**/*.test-d.ts"],
      tsconfig: "./tsconfig.json",
    },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Two workers: vitest's default is one fewer than the cores, which on a 2-core machine ran
    // every file in one process. Files share each worker's module instances (isolate: false)
    // instead of re-importing spec/, autodiff/ and the registry for each of ~95 files; a test that
    // needs module state nobody touched loads fresh copies (vi.resetModules, as pool.test.ts does).
    // Measured on 2 idle cores: 4 min 23 s before, 2 min 15 s after; also passes with shuffled files.
    isolate: false,
    maxWorkers: 2,
    // the bin, when a test starts it, runs the sources (bin/specformer.mjs), never a stale dist/
    env: { SPECFORMER_SOURCE: "1" },
  },
});

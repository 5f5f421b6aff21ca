import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{spec,autodiff,reference,golden,properties,verify,cli,research,bench,examples}/**/*.test.ts"],
    typecheck: {
      enabled: true,
      include: ["{spec,autodiff,reference,golden,properties,verify,cli,research}/**/*.test-d.ts"],
      tsconfig: "./tsconfig.json",
    },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // the bin, when a test starts it, runs the sources (bin/specformer.mjs), never a stale dist/
    env: { SPECFORMER_SOURCE: "1" },
  },
});

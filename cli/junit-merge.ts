/** `specformer junit-merge FILE... [--out FILE]`: one JUnit report from the reports of `verify --shard K/N` runs. */
import { readFileSync, writeFileSync } from "node:fs";
import { JUnitMergeError, mergeJUnit } from "../verify/junit.js";
import { parse, UsageError, type Io } from "./io.js";

const JUNIT_MERGE_USAGE = `usage: specformer junit-merge SHARD.xml... [--out FILE]

  Merges the JUnit reports that "specformer verify --shard K/N --junit SHARD.xml" wrote, one per
  shard, into one report: the same test cases as one unsharded run, suites of the same formula
  joined, counts summed. Prints to stdout unless --out is given.`;

export async function junitMergeCommand(argv: readonly string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { out: { type: "string" } }, JUNIT_MERGE_USAGE);
  if (positionals.length === 0)
    throw new UsageError(`name the JUnit reports to merge\n\n${JUNIT_MERGE_USAGE}`);
  const documents = positionals.map((source) => {
    try {
      return { source, xml: readFileSync(source, "utf8") };
    } catch (e) {
      throw new UsageError(
        `${source}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
  });
  let merged: string;
  try {
    merged = mergeJUnit(documents);
  } catch (e) {
    if (e instanceof JUnitMergeError) throw new UsageError(e.message);
    throw e;
  }
  if (values.out === undefined) io.out(merged);
  else {
    writeFileSync(String(values.out), merged);
    io.err(`specformer junit-merge: wrote ${String(values.out)} (${positionals.length} reports)`);
  }
  return 0;
}

/**
 * Running the command line in-process for tests: an {@link Io} that records what a command writes.
 */
import type { Io } from "./io.js";
import { main } from "./main.js";

/** An Io (not a terminal) whose `out` and `err` calls are kept, one entry per call. */
export function recordingIo(): { io: Io; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { out: (s) => void out.push(s), err: (s) => void err.push(s), tty: false },
    out,
    err,
  };
}

/** `specformer ...args` in this process: the exit code and what it wrote, entries joined by "\n". */
export async function runMain(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { io, out, err } = recordingIo();
  const code = await main(args, io);
  return { code, out: out.join("\n"), err: err.join("\n") };
}

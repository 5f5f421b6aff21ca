/**
 * The `specformer` command: parse arguments, call the library, print. Exit codes: 0 ok,
 * 1 a check failed, 2 bad input or an implementation that could not be driven.
 */
import { processIo, UsageError, type Io } from "./io.js";

const USAGE = `specformer — the GPT transformer as an executable, verified specification

usage: specformer <command> [options]
       specformer --version

commands:
  verify      verify an implementation (default: the built-in reference) against the PyTorch goldens and the laws
  spec        print a formula, or the whole pipeline document (LaTeX, text, JSON, Markdown)
  gradcheck   check gradients against finite differences
  properties  run the invariant laws against an implementation
  golden      list or show the golden cases
  compare     compare two safetensors files tensor by tensor
  tokenize    show the GPT-2 tokens of a text
  generate    generate text from a model
  research    run a study of architectural variants
  junit-merge merge the JUnit reports of verify --shard runs into one

Run "specformer <command> --help" for a command's options.`;

type Command = (argv: readonly string[], io: Io) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  spec: async () => (await import("./spec.js")).specCommand,
  gradcheck: async () => (await import("./gradcheck.js")).gradcheckCommand,
  tokenize: async () => (await import("./tokenize.js")).tokenizeCli,
  golden: async () => (await import("./golden.js")).goldenCli,
  compare: async () => (await import("./golden.js")).compareCli,
  verify: async () => (await import("./verify.js")).verifyCommand,
  generate: async () => (await import("./generate.js")).generateCli,
  properties: async () => (await import("./properties.js")).propertiesCli,
  research: async () => (await import("./research.js")).researchCommand,
  "junit-merge": async () => (await import("./junit-merge.js")).junitMergeCommand,
};

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === "--version" || cmd === "-V") {
    io.out((await import("../autodiff/assets.js")).packageVersion());
    return 0;
  }
  // asked for: usage on stdout, exit 0; not given a command: usage on stderr, exit 2
  if (cmd === "--help" || cmd === "-h" || cmd === "help") {
    io.out(USAGE);
    return 0;
  }
  if (cmd === undefined) {
    io.err(USAGE);
    return 2;
  }
  const load = COMMANDS[cmd];
  if (load === undefined) {
    io.err(`specformer: unknown command "${cmd}"\n\n${USAGE}`);
    return 2;
  }
  try {
    const run = await load();
    if (rest.includes("--help") || rest.includes("-h")) {
      return await run(["--help"], io).catch((e: unknown) => {
        if (e instanceof UsageError) {
          io.out(e.message.replace(/^.*?\n\n/s, ""));
          return 0;
        }
        throw e;
      });
    }
    return await run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`specformer ${cmd}: ${e.message}`);
      return 2;
    }
    io.err(`specformer ${cmd}: ${(e as Error).stack ?? String(e)}`);
    return 2;
  }
}

/**
 * CLI plumbing: argument parsing (node:util parseArgs), output, and the exit-code contract —
 * 0 ok, 1 a check failed, 2 bad input (unknown formula, malformed file, bad flag).
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

export interface Io {
  out(s: string): void;
  err(s: string): void;
  /** True when stdout is a terminal (colour, progress). */
  readonly tty: boolean;
}

export const processIo: Io = {
  out: (s) => void process.stdout.write(s.endsWith("\n") ? s : `${s}\n`),
  err: (s) => void process.stderr.write(s.endsWith("\n") ? s : `${s}\n`),
  tty: process.stdout.isTTY === true,
};

export type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parse a command's arguments strictly; unknown flags are a UsageError naming them. */
export interface Parsed {
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: string[];
}

export function parse(argv: readonly string[], options: Options, usage: string): { values: Record<string, any>; positionals: string[] } {
  try {
    const r = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
    return { values: r.values as Record<string, any>, positionals: r.positionals };
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
}

/** `H=8,eps=1e-6,causal=false,activation=relu` → a configuration object. */
export function parseAssignments(s: string, flag: string): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const part of s.split(",").map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new UsageError(`${flag}: "${part}" is not of the form name=value`);
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (v === "") throw new UsageError(`${flag}: ${k} has no value`);
    out[k] = v === "true" ? true : v === "false" ? false : /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v) ? Number(v) : v;
  }
  return out;
}

export function intFlag(v: string | undefined, flag: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new UsageError(`${flag} must be an integer, got "${v}"`);
  return n;
}

export function numFlag(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got "${v}"`);
  return n;
}

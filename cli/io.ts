/**
 * CLI plumbing: the one argument parser of every command (node:util parseArgs, so `--flag=v`
 * and `--flag v` both work), the options several commands share (`--formulas`, `--config`,
 * `--seed`; `--config` in cli/config.ts), output, and the exit-code contract — 0 ok, 1 a check
 * failed, 2 bad input (unknown
 * formula, malformed file, bad flag).
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** The seed of every command that draws random numbers, unless `--seed` says otherwise. */
export const DEFAULT_SEED = 1;

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

export function parse(
  argv: readonly string[],
  options: Options,
  usage: string,
): { values: Record<string, any>; positionals: string[] } {
  try {
    const r = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
    return { values: r.values as Record<string, any>, positionals: r.positionals };
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${usage}`);
  }
}

/** `H=8,eps=1e-6,causal=false,activation=relu` → a configuration object. */
export function parseAssignments(
  s: string,
  flag: string,
): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const part of s
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new UsageError(`${flag}: "${part}" is not of the form name=value`);
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (v === "") throw new UsageError(`${flag}: ${k} has no value`);
    out[k] =
      v === "true"
        ? true
        : v === "false"
          ? false
          : /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)
            ? Number(v)
            : v;
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

/**
 * `--seed N`: a non-negative integer (fast-check, the weight initialisers and the samplers all
 * take 32-bit seeds), {@link DEFAULT_SEED} when absent.
 */
export function seedFlag(v: string | undefined): number {
  if (v === undefined) return DEFAULT_SEED;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n > 0xffffffff)
    throw new UsageError(`--seed must be an integer in 0 … 4294967295, got "${v}"`);
  return n;
}

/**
 * The formulas a command was asked for: `--formulas a,b` (the one spelling every command
 * shares), an old alias such as properties' `--formula F`, or positionals where a command reads
 * naturally with one (`spec softmax`). Undefined when none was named; never an empty list.
 */
export function formulasFlag(
  sources: { readonly flag: string; readonly value: string | undefined }[],
  positionals: readonly string[] = [],
): string[] | undefined {
  const given = sources.filter((s) => s.value !== undefined);
  if (given.length > 0 && positionals.length > 0)
    throw new UsageError(
      `name the formulas either with ${given[0]!.flag} or as arguments, not ` +
        `both (got ${given[0]!.flag} ${given[0]!.value} and ` +
        `${positionals.join(" ")})`,
    );
  if (given.length > 1)
    throw new UsageError(
      `${given.map((s) => s.flag).join(" and ")} say the same thing: give one of them`,
    );
  if (positionals.length > 0) return [...positionals];
  if (given.length === 0) return undefined;
  const { flag, value } = given[0]!;
  const names = value!
    .split(",")
    .map((f) => f.trim())
    .filter(Boolean);
  if (names.length === 0)
    throw new UsageError(
      `${flag} needs at least one formula name, e.g. ${flag} softmax,layer_norm`,
    );
  return names;
}

/** An option's old spelling: the value of whichever was given, refused when both were. */
export function aliasFlag(
  values: Record<string, unknown>,
  name: string,
  alias: string,
): string | undefined {
  const a = values[name] as string | undefined;
  const b = values[alias] as string | undefined;
  if (a !== undefined && b !== undefined)
    throw new UsageError(`--${alias} is another spelling of --${name}: give one of them`);
  return a ?? b;
}

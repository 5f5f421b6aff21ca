/**
 * Command-line options of the scripts that run the laws outside `npm test` (deep.ts,
 * planted-doc.ts): `--name value` pairs, and the dtypes to run.
 */
import type { FloatDType } from "../autodiff/tensor.js";

/**
 * Read `argv` as `--name value` pairs, giving each value to the handler of its option. An option
 * without a value, or one without a handler, throws.
 */
export function parseOptionPairs(
  argv: readonly string[],
  handlers: Readonly<Record<string, (value: string) => void>>,
): void {
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${argv[i]} needs a value`);
    const handle = Object.hasOwn(handlers, argv[i]!) ? handlers[argv[i]!] : undefined;
    if (handle === undefined) throw new Error(`unknown option ${argv[i]}`);
    handle(v);
  }
}

/** The dtypes `--dtype f64|f32|both` asks for. */
export function dtypesOption(v: string): FloatDType[] {
  if (v !== "f64" && v !== "f32" && v !== "both")
    throw new Error(`--dtype must be f64, f32 or both, got ${v}`);
  return v === "both" ? ["f64", "f32"] : [v];
}

/**
 * The JSON documents specformer writes (`--json` of every command, `verifyReportToJSON`,
 * `lawReportToJSON`): one naming style on the wire — snake_case keys — and a `schema_version`
 * first, so a reader can tell which layout it holds. docs/JSON.md documents them and
 * docs/schema/ holds their JSON Schemas.
 */

/**
 * The layout version of every JSON document specformer writes. Raised when a field is renamed,
 * removed or changes meaning; adding a field does not raise it.
 */
export const SCHEMA_VERSION = 1;

/**
 * Keys whose children are names from the data (hyperparameters such as `d_model` or `V`,
 * argument names such as `W_Q`, formula names), kept as they are; their values are still converted.
 */
const DATA_MAPS = new Set([
  "config",
  "values",
  "shapes",
  "coverage",
  "law_coverage",
  "choices",
  "defaults",
  "dims",
]);

const CAMEL = /^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+$/;

/** `maxAbsErr` → `max_abs_err`; other names unchanged. */
function snakeName(key: string): string {
  return CAMEL.test(key) ? key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : key;
}

/**
 * A value as it goes on the wire: object keys in snake_case (except the names inside data maps),
 * non-finite numbers as the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers),
 * undefined fields left out.
 */
export function toWire(
  value: unknown,
  number: (n: number) => unknown = finiteOrString,
  dataMap = false,
): unknown {
  if (typeof value === "number") return number(value);
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => toWire(v, number));
  if (ArrayBuffer.isView(value))
    return Array.from(value as unknown as ArrayLike<number>, (v) => toWire(v, number));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined || typeof v === "function") continue;
    out[dataMap ? k : snakeName(k)] = toWire(v, number, DATA_MAPS.has(k));
  }
  return out;
}

/** JSON's numbers are finite: NaN and ±Infinity go as strings. */
export function finiteOrString(n: number): number | string {
  return Number.isFinite(n) ? n : String(n);
}

/**
 * `{ schema_version, ...document }` as indented JSON text (no trailing newline).
 * @param number how a number goes on the wire (default {@link finiteOrString}).
 */
export function wireJSON(
  document: object,
  number: (n: number) => unknown = finiteOrString,
): string {
  return JSON.stringify(
    { schema_version: SCHEMA_VERSION, ...(toWire(document, number) as object) },
    null,
    2,
  );
}

/**
 * A validator for the subset of JSON Schema (draft 2020-12) that docs/schema/ uses: `type`
 * (one or a list), `const`, `enum`, `properties`, `required`, `additionalProperties` (boolean or
 * schema), `items`, `minimum`, `anyOf`, and `$ref` to `#/$defs/NAME`. Any other keyword is an
 * error, so a schema cannot silently rely on what this validator does not check.
 */

export type Schema = boolean | { readonly [keyword: string]: unknown };

const KNOWN = new Set([
  "$schema",
  "$id",
  "$defs",
  "$comment",
  "title",
  "description",
  "type",
  "const",
  "enum",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "minimum",
  "anyOf",
  "$ref",
]);

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/**
 * Every place `value` breaks `schema`, as `path: what` lines (empty when it conforms).
 * @throws Error for a keyword outside the subset, or a `$ref` that names no definition.
 */
export function validate(
  value: unknown,
  schema: Schema,
  root: Schema = schema,
  path = "$",
): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${path}: not allowed here`];
  for (const k of Object.keys(schema))
    if (!KNOWN.has(k))
      throw new Error(`json-schema: keyword "${k}" at ${path} is outside the supported subset`);
  const errors: string[] = [];
  if (schema["$ref"] !== undefined) {
    const ref = String(schema["$ref"]);
    const m = /^#\/\$defs\/(.+)$/.exec(ref);
    const defs = (typeof root === "object" ? root["$defs"] : undefined) as
      | Record<string, Schema>
      | undefined;
    const target = m ? defs?.[m[1]!] : undefined;
    if (target === undefined)
      throw new Error(`json-schema: $ref "${ref}" at ${path} names no definition`);
    errors.push(...validate(value, target, root, path));
  }
  const t = typeOf(value);
  if (schema["type"] !== undefined) {
    const types = ([] as string[]).concat(schema["type"] as string | string[]);
    if (!types.some((want) => want === t || (want === "number" && t === "integer")))
      return [...errors, `${path}: expected ${types.join(" or ")}, got ${t}`];
  }
  if ("const" in schema && JSON.stringify(value) !== JSON.stringify(schema["const"]))
    errors.push(
      `${path}: expected ${JSON.stringify(schema["const"])}, got ${JSON.stringify(value)}`,
    );
  if (
    schema["enum"] !== undefined &&
    !(schema["enum"] as unknown[]).some((e) => JSON.stringify(e) === JSON.stringify(value))
  )
    errors.push(
      `${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema["enum"])}`,
    );
  if (
    schema["minimum"] !== undefined &&
    typeof value === "number" &&
    value < (schema["minimum"] as number)
  )
    errors.push(`${path}: ${value} is below the minimum ${String(schema["minimum"])}`);
  if (schema["anyOf"] !== undefined) {
    const branches = (schema["anyOf"] as Schema[]).map((s) => validate(value, s, root, path));
    if (!branches.some((b) => b.length === 0))
      errors.push(`${path}: matches none of anyOf (${branches.map((b) => b[0]).join(" | ")})`);
  }
  if (t === "array" && schema["items"] !== undefined)
    (value as unknown[]).forEach((v, i) =>
      errors.push(...validate(v, schema["items"] as Schema, root, `${path}[${i}]`)),
    );
  if (t === "object") {
    const obj = value as Record<string, unknown>;
    const props = (schema["properties"] ?? {}) as Record<string, Schema>;
    for (const r of (schema["required"] ?? []) as string[])
      if (!(r in obj)) errors.push(`${path}: missing required "${r}"`);
    for (const [k, v] of Object.entries(obj)) {
      if (k in props) errors.push(...validate(v, props[k]!, root, `${path}.${k}`));
      else if (schema["additionalProperties"] !== undefined)
        errors.push(
          ...validate(v, schema["additionalProperties"] as Schema, root, `${path}.${k}`).map((e) =>
            schema["additionalProperties"] === false ? `${path}: unexpected property "${k}"` : e,
          ),
        );
    }
  }
  return errors;
}

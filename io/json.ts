/**
 * A strict JSON parser for untrusted text: safetensors headers, golden-case metadata, manifests
 * and checkpoint configurations.
 *
 * `JSON.parse` silently keeps the last of two equal keys, and building ordinary objects from
 * untrusted keys invites prototype pollution; this parser refuses both, bounds nesting, and says
 * where (the character position) the text went wrong.
 */

/** The error for text that is not valid JSON (or breaks one of the parser's bounds). */
export class JsonFormatError extends Error {
  override name = "JsonFormatError";
  /** The file (or other source label) the text came from. */
  readonly source: string;
  /** The problem, without the source prefix: `header is not valid JSON: … at character 12`. */
  readonly problem: string;
  /** Index in the text (UTF-16 code units) where the problem was found. */
  readonly position: number;
  constructor(source: string, problem: string, position: number) {
    super(`${source}: ${problem}`);
    this.source = source;
    this.problem = problem;
    this.position = position;
  }
}

/** Deepest nesting accepted (a safetensors header needs 3; the bound keeps the stack small). */
const MAX_JSON_DEPTH = 64;
/** Keys refused anywhere in a document: they are how prototype pollution gets in. */
export const RESERVED_KEYS: readonly string[] = ["__proto__", "constructor", "prototype"];

/** A JSON value as our parser returns it: objects have a null prototype. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** A character for messages: itself when printable ASCII, else its code point. */
export function describeChar(text: string, pos: number): string {
  if (pos >= text.length) return "end of input";
  const c = text.charCodeAt(pos);
  if (c >= 0x20 && c < 0x7f) return `'${text[pos]}'`;
  return `U+${c.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * Parse JSON strictly: standard grammar only (RFC 8259), objects built with a null prototype,
 * duplicate keys and the keys `__proto__`, `constructor`, `prototype` refused, nesting bounded
 * by {@link MAX_JSON_DEPTH}. Runs in time linear in the text, without recursion.
 *
 * @param what  names the text in messages, e.g. `"header"`.
 * @param limits  `maxRootKeys`: refuse a top-level object with more keys, as soon as the next
 *   one starts.
 * @throws JsonFormatError naming `source`, `what` and the character position.
 * @example parseStrictJson('{"a": [1, 2]}', "x.json").a // [1, 2]
 */
export function parseStrictJson(
  text: string,
  source = "<json>",
  what = "JSON",
  limits: { readonly maxRootKeys?: { readonly max: number; readonly why?: string } } = {},
): JsonValue {
  let pos = 0;
  const fail = (problem: string): never => {
    const at = `at character ${pos}`;
    throw new JsonFormatError(source, `${what} is not valid JSON: ${problem} ${at}`, pos);
  };
  const skipWs = (): void => {
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else return;
    }
  };
  const parseString = (): string => {
    // text[pos] is the opening quote
    pos++;
    let out = "";
    let runStart = pos;
    for (;;) {
      if (pos >= text.length) fail("unterminated string");
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(runStart, pos);
        pos++;
        return out;
      }
      if (c < 0x20) fail(`raw control character ${describeChar(text, pos)} in a string`);
      if (c !== 0x5c) {
        pos++;
        continue;
      }
      out += text.slice(runStart, pos);
      pos++;
      const e = text[pos];
      switch (e) {
        case '"':
          out += '"';
          break;
        case "\\":
          out += "\\";
          break;
        case "/":
          out += "/";
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "n":
          out += "\n";
          break;
        case "r":
          out += "\r";
          break;
        case "t":
          out += "\t";
          break;
        case "u": {
          const hex = text.slice(pos + 1, pos + 5);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          pos += 4;
          break;
        }
        default:
          fail(`bad escape \\${e === undefined ? "" : describeChar(text, pos)}`);
      }
      pos++;
      runStart = pos;
    }
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const parseScalar = (): JsonValue => {
    const c = text[pos];
    if (c === '"') return parseString();
    if (text.startsWith("true", pos)) {
      pos += 4;
      return true;
    }
    if (text.startsWith("false", pos)) {
      pos += 5;
      return false;
    }
    if (text.startsWith("null", pos)) {
      pos += 4;
      return null;
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (m !== null) {
      pos += m[0].length;
      return Number(m[0]);
    }
    return fail(`unexpected ${describeChar(text, pos)}`);
  };
  /** An object key and its ':' (pos at the key's opening quote after whitespace). */
  const parseKey = (obj: { [key: string]: JsonValue }): string => {
    skipWs();
    if (text[pos] !== '"') fail(`expected a string key, found ${describeChar(text, pos)}`);
    const keyPos = pos;
    const key = parseString();
    if (RESERVED_KEYS.includes(key)) {
      pos = keyPos;
      fail(`reserved key ${JSON.stringify(key)} (refused: it could pollute object prototypes)`);
    }
    if (Object.prototype.hasOwnProperty.call(obj, key)) {
      pos = keyPos;
      const why = "a plain JSON.parse would silently keep the last one";
      fail(`duplicate key ${JSON.stringify(key)} (${why})`);
    }
    skipWs();
    if (text[pos] !== ":") {
      fail(`expected ':' after key ${JSON.stringify(key)}, found ${describeChar(text, pos)}`);
    }
    pos++;
    return key;
  };
  // Iterative: open containers live on an explicit stack, so no input can overflow the call stack.
  type Open =
    | { obj: { [key: string]: JsonValue }; key: string; keys: number }
    | { arr: JsonValue[] };
  const stack: Open[] = [];
  let value: JsonValue;
  const rootKeyLimit = limits.maxRootKeys;
  parse: for (;;) {
    skipWs();
    const c = text[pos];
    let v: JsonValue;
    if (c === "{" || c === "[") {
      if (stack.length >= MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH} levels`);
      pos++;
      skipWs();
      if (c === "{") {
        const obj = Object.create(null) as { [key: string]: JsonValue };
        if (text[pos] === "}") {
          pos++;
          v = obj;
        } else {
          stack.push({ obj, key: parseKey(obj), keys: 1 });
          continue;
        }
      } else if (text[pos] === "]") {
        pos++;
        v = [];
      } else {
        stack.push({ arr: [] });
        continue;
      }
    } else v = parseScalar();
    // v is complete: store it in the innermost open container, closing those that end here
    for (;;) {
      const top = stack[stack.length - 1];
      if (top === undefined) {
        value = v;
        break parse;
      }
      skipWs();
      if ("obj" in top) {
        top.obj[top.key] = v;
        if (text[pos] === ",") {
          pos++;
          if (stack.length === 1 && rootKeyLimit !== undefined && top.keys >= rootKeyLimit.max) {
            const why = rootKeyLimit.why === undefined ? "" : ` (${rootKeyLimit.why})`;
            const problem = `${what} has more than ${rootKeyLimit.max} entries${why}`;
            throw new JsonFormatError(source, problem, pos);
          }
          top.key = parseKey(top.obj);
          top.keys++;
          continue parse;
        }
        if (text[pos] === "}") {
          pos++;
          stack.pop();
          v = top.obj;
          continue;
        }
        fail(`expected ',' or '}', found ${describeChar(text, pos)}`);
      } else {
        top.arr.push(v);
        if (text[pos] === ",") {
          pos++;
          continue parse;
        }
        if (text[pos] === "]") {
          pos++;
          stack.pop();
          v = top.arr;
          continue;
        }
        fail(`expected ',' or ']', found ${describeChar(text, pos)}`);
      }
    }
  }
  skipWs();
  if (pos !== text.length) fail(`unexpected ${describeChar(text, pos)} after the JSON value`);
  return value;
}

/** True for objects our parser made (plain data, not arrays). */
export function isJsonObject(v: unknown): v is { [key: string]: JsonValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

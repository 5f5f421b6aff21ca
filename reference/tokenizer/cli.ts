/**
 * Rendering for `specformer tokenize`: the CLI parses arguments and prints what this returns.
 */
import { SCHEMA_VERSION } from "../../autodiff/wire.js";
import { Tokenizer } from "./bpe.js";
import type { EncodeOptions } from "./bpe.js";

/** Options of {@link tokenizeCommand}. */
export interface TokenizeCommandOptions {
  /** `{"text","ids","pieces"}` as one line of JSON instead of a table. */
  json: boolean;
  /** Tokenizer to use; default GPT-2's. */
  tokenizer?: Tokenizer;
  /** Special tokens to encode as ids (default none: their text is an error, as in tiktoken). */
  allowedSpecial?: EncodeOptions["allowedSpecial"];
}

const VISIBLE: Record<string, string> = { " ": "␣", "\n": "↵", "\r": "␍", "\t": "⇥" };

/**
 * A piece with its whitespace and control characters made visible: space `␣`, newline `↵`,
 * carriage return `␍`, tab `⇥`, any other whitespace or control character as `<U+XXXX>`.
 * (Bytes that are not valid UTF-8 already show as `<0xHH>` in the piece.)
 *
 * @example
 * visibleWhitespace(" world\n"); // "␣world↵"
 */
export function visibleWhitespace(piece: string): string {
  return piece.replace(/[\s\p{Cc}\p{Cf}]/gu, (ch) => {
    const named = VISIBLE[ch];
    if (named !== undefined) return named;
    return `<U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}>`;
  });
}

/**
 * Tokenizes `text` and renders the result: a table of index, id and piece (whitespace made
 * visible, see {@link visibleWhitespace}) with a summary line, or with `json: true` the
 * object `{"text", "ids", "pieces"}` where `pieces` are the raw display pieces of
 * `Tokenizer.decodePieces`.
 *
 * @example
 * tokenizeCommand("Hello, world!", { json: true });
 * // '{"text":"Hello, world!","ids":[15496,11,995,0],"pieces":["Hello",","," world","!"]}'
 */
export function tokenizeCommand(text: string, opts: TokenizeCommandOptions): string {
  const tokenizer = opts.tokenizer ?? Tokenizer.gpt2();
  const ids = tokenizer.encode(
    text,
    opts.allowedSpecial !== undefined ? { allowedSpecial: opts.allowedSpecial } : {},
  );
  const pieces = tokenizer.decodePieces(ids);
  if (opts.json) return JSON.stringify({ schema_version: SCHEMA_VERSION, text, ids, pieces });

  const header = ["index", "id", "piece"] as const;
  const indexWidth = Math.max(header[0].length, String(Math.max(ids.length - 1, 0)).length);
  const idWidth = Math.max(header[1].length, ...ids.map((id) => String(id).length));
  const row = (a: string, b: string, c: string): string =>
    `${a.padStart(indexWidth)}  ${b.padStart(idWidth)}  ${c}`;
  const lines = [row(header[0], header[1], header[2])];
  ids.forEach((id, i) => lines.push(row(String(i), String(id), visibleWhitespace(pieces[i]!))));
  const chars = Array.from(text).length;
  const bytes = new TextEncoder().encode(text).length;
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`;
  lines.push(
    `${plural(ids.length, "token")}, ${plural(chars, "character")}, ${plural(bytes, "byte")}`,
  );
  return lines.join("\n");
}

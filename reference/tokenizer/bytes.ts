/**
 * Byte-level helpers for the BPE tokenizer: UTF-8 encoding of JS strings (with a decided
 * behaviour for lone surrogates), tolerant UTF-8 decoding, a per-piece display form that
 * shows invalid bytes, and GPT-2's reversible byte ↔ printable-character map.
 */

/** U+FFFD REPLACEMENT CHARACTER encoded in UTF-8. */
const REPLACEMENT_UTF8 = [0xef, 0xbf, 0xbd] as const;

/**
 * GPT-2's `bytes_to_unicode()`: a bijection from the 256 byte values to printable Unicode
 * characters, so that every byte sequence can be written as a string without whitespace or
 * control characters (this is how `vocab.json` / `merges.txt` spell tokens, e.g. `"Ġthe"` for
 * the bytes of `" the"`).
 *
 * The 188 bytes that are already printable Latin-1 (`!`…`~`, `¡`…`¬`, `®`…`ÿ`) map to
 * themselves; the other 68 bytes, in increasing order, map to U+0100, U+0101, … .
 *
 * Returns the map as an array indexed by byte value, together with the list `bs` of bytes
 * in GPT-2's order (printable ones first, then the remapped ones). GPT-2 numbers its 256
 * single-byte tokens in exactly that order: token `i` is the byte `bs[i]`.
 *
 * @example
 * const { byteToChar } = bytesToUnicode();
 * byteToChar[0x20]; // "Ġ" (U+0120): space is the 33rd remapped byte
 * byteToChar[0x41]; // "A"
 */
export function bytesToUnicode(): { byteToChar: string[]; order: number[] } {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b); // '!' … '~'
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b); // '¡' … '¬'
  for (let b = 0xae; b <= 0xff; b++) printable.push(b); // '®' … 'ÿ'
  const isPrintable = new Set(printable);
  const byteToChar: string[] = new Array<string>(256);
  const order = [...printable];
  for (const b of printable) byteToChar[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (isPrintable.has(b)) continue;
    byteToChar[b] = String.fromCharCode(256 + n);
    order.push(b);
    n++;
  }
  return { byteToChar, order };
}

/**
 * Inverse of {@link bytesToUnicode}: character → byte value.
 *
 * @example
 * unicodeToBytes().get("Ġ"); // 32
 */
export function unicodeToBytes(): Map<string, number> {
  const { byteToChar } = bytesToUnicode();
  const inverse = new Map<string, number>();
  byteToChar.forEach((ch, b) => inverse.set(ch, b));
  return inverse;
}

/**
 * Spells a byte sequence with GPT-2's byte-to-unicode characters (the `vocab.json` form).
 *
 * @example
 * bytesToGpt2String(new TextEncoder().encode(" the")); // "Ġthe"
 */
export function bytesToGpt2String(bytes: Uint8Array): string {
  const { byteToChar } = BYTE_MAP;
  let s = "";
  for (const b of bytes) s += byteToChar[b]!;
  return s;
}

/**
 * Inverse of {@link bytesToGpt2String}. Throws when a character is not one of the 256
 * characters of the map, naming it and its index.
 */
export function gpt2StringToBytes(s: string): Uint8Array {
  const inverse = CHAR_TO_BYTE;
  const chars = Array.from(s);
  const out = new Uint8Array(chars.length);
  chars.forEach((ch, i) => {
    const b = inverse.get(ch);
    if (b === undefined) {
      const cp = ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
      throw new Error(
        `gpt2StringToBytes: character U+${cp} at index ${i} of ` +
          `${JSON.stringify(s)} is not in GPT-2's byte-to-unicode map`,
      );
    }
    out[i] = b;
  });
  return out;
}

const BYTE_MAP = bytesToUnicode();
const CHAR_TO_BYTE = unicodeToBytes();

/**
 * Number of UTF-8 bytes of `s[start, end)`, counting a lone surrogate as the 3 bytes of
 * U+FFFD (see {@link utf8Encode}).
 */
function utf8Length(s: string, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/**
 * UTF-8 bytes of `s[start, end)` (default: all of `s`).
 *
 * A JS string is UTF-16 and may hold lone surrogates, which have no UTF-8 encoding. They are
 * encoded as U+FFFD (bytes EF BF BD), exactly as the WHATWG `TextEncoder`, Node's `Buffer`
 * and js-tiktoken do; such a string therefore does not round-trip through encode/decode.
 * A surrogate pair split across `end` counts as a lone surrogate, so callers must cut
 * strings at code point boundaries (pre-tokens from a `u`-flag regex always are).
 */
export function utf8Encode(s: string, start = 0, end = s.length): Uint8Array {
  const out = new Uint8Array(utf8Length(s, start, end));
  let k = 0;
  for (let i = start; i < end; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[k++] = c;
      continue;
    }
    if (c < 0x800) {
      out[k++] = 0xc0 | (c >> 6);
      out[k++] = 0x80 | (c & 0x3f);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < end ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        // code point = 0x10000 + (high − 0xD800)·0x400 + (low − 0xDC00)
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        out[k++] = 0xf0 | (c >> 18);
        out[k++] = 0x80 | ((c >> 12) & 0x3f);
        out[k++] = 0x80 | ((c >> 6) & 0x3f);
        out[k++] = 0x80 | (c & 0x3f);
      } else {
        out[k++] = REPLACEMENT_UTF8[0];
        out[k++] = REPLACEMENT_UTF8[1];
        out[k++] = REPLACEMENT_UTF8[2];
      }
      continue;
    }
    out[k++] = 0xe0 | (c >> 12);
    out[k++] = 0x80 | ((c >> 6) & 0x3f);
    out[k++] = 0x80 | (c & 0x3f);
  }
  return out;
}

/** Index of the first lone surrogate in `s`, or −1 when `s` is well-formed UTF-16. */
export function firstLoneSurrogate(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return -1;
}

// ignoreBOM: a leading EF BB BF is text (U+FEFF), not a byte-order mark to strip; without it
// decode(encode("\uFEFF…")) would lose the character.
const LENIENT_DECODER = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * Decodes UTF-8, replacing every maximal ill-formed subsequence by one U+FFFD (the WHATWG
 * Encoding Standard, the same policy as Python's `bytes.decode("utf-8", errors="replace")`
 * and tiktoken's `decode`). Never throws.
 */
export function utf8Decode(bytes: Uint8Array): string {
  return LENIENT_DECODER.decode(bytes);
}

/**
 * Length of the well-formed UTF-8 sequence starting at `bytes[i]`, or 0 when the bytes there
 * do not start one (Unicode Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF).
 */
export function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i];
  if (b0 === undefined) return 0;
  if (b0 < 0x80) return 1;
  const cont = (j: number, lo = 0x80, hi = 0xbf): boolean => {
    const b = bytes[i + j];
    return b !== undefined && b >= lo && b <= hi;
  };
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const lo = b0 === 0xe0 ? 0xa0 : 0x80;
    const hi = b0 === 0xed ? 0x9f : 0xbf;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const lo = b0 === 0xf0 ? 0x90 : 0x80;
    const hi = b0 === 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/**
 * Display form of one token's bytes: the well-formed UTF-8 parts as text, every byte that is
 * not part of a well-formed sequence as `<0xHH>` (the byte-fallback spelling of
 * SentencePiece/Llama vocabularies). A token holding half of a multi-byte character (GPT-2 has
 * many, e.g. the first two bytes of an emoji) thus shows as `<0xF0><0x9F>` instead of U+FFFD,
 * which would hide which bytes it holds.
 *
 * @example
 * bytesToDisplay(new Uint8Array([0x20, 0xe2, 0x80])); // " <0xE2><0x80>"
 */
export function bytesToDisplay(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const len = utf8SequenceLength(bytes, i);
    if (len === 0) {
      out += `<0x${bytes[i]!.toString(16).toUpperCase().padStart(2, "0")}>`;
      i += 1;
    } else {
      out += utf8Decode(bytes.subarray(i, i + len));
      i += len;
    }
  }
  return out;
}

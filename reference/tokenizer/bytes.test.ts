import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bytesToDisplay,
  bytesToGpt2String,
  bytesToUnicode,
  firstLoneSurrogate,
  gpt2StringToBytes,
  unicodeToBytes,
  utf8Decode,
  utf8Encode,
  utf8SequenceLength,
} from "./bytes.js";

const SEED = 0x5eed_b17e;
const PYTHON = "/usr/bin/python3";

type WellFormedString = string & { isWellFormed(): boolean; toWellFormed(): string };

describe("bytesToUnicode (GPT-2's byte ↔ printable character map)", () => {
  it("is a bijection onto 256 distinct single characters", () => {
    const { byteToChar, order } = bytesToUnicode();
    expect(byteToChar).toHaveLength(256);
    expect(new Set(byteToChar).size).toBe(256);
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 256 }, (_, b) => b));
    for (const ch of byteToChar) expect([...ch]).toHaveLength(1);
    const inverse = unicodeToBytes();
    byteToChar.forEach((ch, b) => expect(inverse.get(ch)).toBe(b));
  });

  it("keeps printable Latin-1 bytes and maps no byte to whitespace or a control character", () => {
    const { byteToChar } = bytesToUnicode();
    for (let b = 0; b < 256; b++) {
      const ch = byteToChar[b]!;
      const printableLatin1 =
        (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      expect(ch === String.fromCharCode(b)).toBe(printableLatin1);
      expect(/[\s\p{Cc}\p{Cf}]/u.test(ch)).toBe(false);
    }
  });

  it("spells space, newline and tab as GPT-2's vocab.json does (Ġ, Ċ, ĉ)", () => {
    // "Ġthe", "Ċ" and "ĉ" are the familiar spellings of " the", "\n" and "\t" in GPT-2's
    // vocab.json; the doc example of bytesToUnicode relies on the first.
    const { byteToChar } = bytesToUnicode();
    expect(byteToChar[0x20]).toBe("Ġ");
    expect(byteToChar[0x0a]).toBe("Ċ");
    expect(byteToChar[0x09]).toBe("ĉ");
    expect(byteToChar[0x41]).toBe("A");
    expect(unicodeToBytes().get("Ġ")).toBe(32);
    expect(bytesToGpt2String(new TextEncoder().encode(" the"))).toBe("Ġthe");
  });

  it("bytesToGpt2String and gpt2StringToBytes are inverse on any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expect(gpt2StringToBytes(bytesToGpt2String(bytes))).toEqual(bytes);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("gpt2StringToBytes names a character outside the map and its index", () => {
    expect(() => gpt2StringToBytes("Ġa b")).toThrow(
      'gpt2StringToBytes: character U+0020 at index 2 of "Ġa b" is not in GPT-2\'s byte-to-unicode map',
    );
  });
});

describe("utf8Encode", () => {
  it("equals TextEncoder on any string, lone surrogates included (both give U+FFFD)", () => {
    const loneSurrogate = fc
      .integer({ min: 0xd800, max: 0xdfff })
      .map((c) => String.fromCharCode(c));
    const unit = fc.oneof(
      fc.string({ unit: "binary", maxLength: 3 }),
      loneSurrogate,
      fc.constantFrom("😀", "é", "\u0000"),
    );
    fc.assert(
      fc.property(
        fc.array(unit, { maxLength: 20 }).map((parts) => parts.join("")),
        (s) => {
          expect(utf8Encode(s)).toEqual(new TextEncoder().encode(s));
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("encodes a slice, treating a surrogate pair cut by the slice as lone", () => {
    expect(Array.from(utf8Encode("x😀y", 1, 3))).toEqual([0xf0, 0x9f, 0x98, 0x80]);
    expect(Array.from(utf8Encode("x😀y", 1, 2))).toEqual([0xef, 0xbf, 0xbd]);
  });

  it("firstLoneSurrogate agrees with String.prototype.isWellFormed", () => {
    const loneSurrogate = fc
      .integer({ min: 0xd800, max: 0xdfff })
      .map((c) => String.fromCharCode(c));
    const unit = fc.oneof(fc.string({ unit: "binary", maxLength: 2 }), loneSurrogate);
    fc.assert(
      fc.property(
        fc.array(unit, { maxLength: 10 }).map((p) => p.join("")),
        (s) => {
          const at = firstLoneSurrogate(s);
          expect(at < 0).toBe((s as WellFormedString).isWellFormed());
          if (at >= 0) expect((s.slice(0, at) as WellFormedString).isWellFormed()).toBe(true);
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
    expect(firstLoneSurrogate("ab\uDC00")).toBe(2);
    expect(firstLoneSurrogate("😀\uD83D")).toBe(2);
  });
});

describe("utf8Decode", () => {
  it("keeps a leading U+FEFF (no BOM stripping)", () => {
    expect(utf8Decode(utf8Encode("\uFEFFabc"))).toBe("\uFEFFabc");
  });

  it.skipIf(!existsSync(PYTHON))(
    "replaces ill-formed bytes exactly as Python's decode(errors='replace')",
    () => {
      const cases = fc.sample(
        fc.oneof(
          fc.uint8Array({ maxLength: 12 }),
          // prefixes and damaged copies of multi-byte characters
          fc
            .tuple(fc.string({ unit: "binary", maxLength: 4 }), fc.nat(), fc.nat(), fc.nat(255))
            .map(([s, cut, at, b]) => {
              const bytes = Array.from(new TextEncoder().encode(s));
              const kept = bytes.slice(0, bytes.length === 0 ? 0 : cut % (bytes.length + 1));
              if (kept.length > 0) kept[at % kept.length] = b;
              return Uint8Array.from(kept);
            }),
        ),
        { seed: SEED, numRuns: 400 },
      );
      const script =
        "import json,sys\n" +
        "cases=json.load(sys.stdin)\n" +
        "print(json.dumps([bytes(c).decode('utf-8', errors='replace') for c in cases]))";
      const expected = JSON.parse(
        execFileSync(PYTHON, ["-c", script], {
          input: JSON.stringify(cases.map((c) => Array.from(c))),
          encoding: "utf8",
        }),
      ) as string[];
      cases.forEach((c, i) =>
        expect(utf8Decode(c), `bytes ${Array.from(c).join(",")}`).toBe(expected[i]),
      );
    },
  );
});

describe("utf8SequenceLength and bytesToDisplay", () => {
  it("accept exactly what a fatal TextDecoder accepts", () => {
    const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 4 }), (bytes) => {
        let valid: boolean;
        try {
          valid = fatal.decode(bytes).length > 0 && [...fatal.decode(bytes)].length === 1;
        } catch {
          valid = false;
        }
        // `bytes` is one well-formed character iff the sequence at 0 spans all of it
        expect(utf8SequenceLength(bytes, 0) === bytes.length).toBe(valid);
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it("shows valid text unchanged and each stray byte as <0xHH>", () => {
    expect(bytesToDisplay(new Uint8Array([0x20, 0xe2, 0x80]))).toBe(" <0xE2><0x80>");
    expect(bytesToDisplay(new TextEncoder().encode("héllo 😀"))).toBe("héllo 😀");
    expect(bytesToDisplay(new Uint8Array([0xf0, 0x9f, 0x98]))).toBe("<0xF0><0x9F><0x98>");
    expect(bytesToDisplay(new Uint8Array([0xc0, 0xaf, 0x41]))).toBe("<0xC0><0xAF>A"); // overlong '/'
    expect(bytesToDisplay(new Uint8Array([0xed, 0xa0, 0x80]))).toBe("<0xED><0xA0><0x80>"); // encoded surrogate
  });

  it("loses nothing: the displayed pieces spell the bytes back", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 16 }), (bytes) => {
        const shown = bytesToDisplay(bytes);
        const back: number[] = [];
        for (const part of shown.split(/(<0x[0-9A-F]{2}>)/)) {
          const m = /^<0x([0-9A-F]{2})>$/.exec(part);
          if (m) back.push(parseInt(m[1]!, 16));
          else back.push(...new TextEncoder().encode(part));
        }
        expect(Uint8Array.from(back)).toEqual(bytes);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

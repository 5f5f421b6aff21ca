/**
 * Our GPT-2 tokenizer against an independent oracle: js-tiktoken's GPT-2 encoder (a port of
 * OpenAI's tiktoken with its own merge loop, which merges by the rank of the concatenated
 * bytes rather than by a merge list). Ids must be identical, and decode(encode(s)) must give
 * back every well-formed string.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { getEncoding } from "js-tiktoken";
import { describe, expect, it } from "vitest";
import { Tokenizer } from "./bpe.js";

const tok = Tokenizer.gpt2();
const oracle = getEncoding("gpt2");

const SEED = 20_250_101;
const RUNS_PER_ARBITRARY = 500; // × 4 arbitraries = 2,000 random strings

function expectSameAsOracle(s: string): void {
  const theirs = oracle.encode(s, [], []); // no special-token handling on either side
  const mine = tok.encodeOrdinary(s);
  if (JSON.stringify(mine) !== JSON.stringify(theirs)) {
    expect({ text: s, ids: mine }).toEqual({ text: s, ids: theirs });
  }
}

function expectRoundTrip(s: string): void {
  const back = tok.decode(tok.encodeOrdinary(s));
  if (back !== s) expect({ text: s, decoded: back }).toEqual({ text: s, decoded: s });
}

const seedDoc = readFileSync("/work/shared/seed/000_d98014b447741c17.txt", "utf8");
const corpus = readFileSync(new URL("../data/corpus.txt", import.meta.url), "utf8");
const ownSource = readFileSync(new URL("./merge.ts", import.meta.url), "utf8");
const pythonSource = readFileSync(new URL("../data/extract_corpus.py", import.meta.url), "utf8");

const FIXED: Record<string, string> = {
  "seed example": "Hello, world!",
  "English prose (corpus, first 20 kB)": corpus.slice(0, 20_000),
  "Russian (seed document, whole)": seedDoc,
  "TypeScript source": ownSource,
  "Python source": pythonSource,
  "JSON and markup":
    '{"a": [1, 2.5e-3, null], "b": "x\\ny"}\n<div class="x">&amp; <b>bold</b></div>',
  contractions:
    "it's IT'S It's they're THEY'RE we've I'm you'll he'd don't can't 's 't 're 've 'm 'll 'd ’s it’s O'Neil",
  numbers:
    "0 7 42 3.14159 1,000,000 -12 1e10 0x1F ２０２４ ١٢٣ ⅫⅣ ½ 10⁻³ 2024-01-01 12:30:45 $9.99 99%",
  emoji: "😀 👍🏽 🇺🇦🇯🇵 👨‍👩‍👧‍👦 🏳️‍🌈 🧑🏿‍💻 ❤️‍🔥 *️⃣ 1️⃣ 👁️‍🗨️ 🫠🫶",
  CJK: "東京は日本の首都です。中华人民共和国。한국어 텍스트입니다. カタカナとひらがな、漢字。",
  "other scripts":
    "Ελληνικά العربية עִבְרִית हिन्दी ภาษาไทย ქართული Ελλάδα Tiếng Việt e\u0301 a\u0308 ﬁ ǅ",
  "whitespace runs": [
    "a b",
    "a  b",
    "a   b",
    "a\tb",
    "a\t\tb",
    "a \tb",
    "a\t b",
    "a\nb",
    "a\n\nb",
    "a\r\nb",
    "a\r\n\r\nb",
    "a\rb",
    "a \n b",
    "a\u00a0b",
    "a\u00a0 b",
    "a\u2003\u2003b",
    "a\u3000b",
    "a\u2028b",
    "a\u2029b",
    "a\u0085b",
    "a\ufeffb",
    "a\u000bb",
    "a\u000cb",
    "a\u200bb",
    "trailing   ",
    "trailing\t\t",
    "trailing\n",
    "trailing \n",
    "   leading",
    "\n\nleading",
    "\t \t \t",
    " ",
    "\n",
    "\r\n",
  ].join("|"),
  "whitespace before symbols and numbers": "x  !  ?\t1\t 2  3\n(4)\n\n[5] \"6\" ' 7'",
  "control characters": "\u0000\u0001\u001b[31mred\u001b[0m\u007f\u0080\u009f",
  "long runs":
    `${"a".repeat(500)} ${"-".repeat(300)} ${" ".repeat(400)}x ` +
    `${"\n".repeat(200)}${"9".repeat(301)} ${"😀".repeat(100)}`,
  "private use and unassigned": "\ue000\uf8ff\u{f0000}\u{10ffff}\u0378\u{e0001}",
};

describe("GPT-2 ids equal js-tiktoken's", () => {
  for (const [name, text] of Object.entries(FIXED)) {
    it(`on ${name}`, () => {
      expectSameAsOracle(text);
      expectRoundTrip(text);
    });
  }

  it("on every line of the seed document and of the corpus separately", () => {
    for (const line of [...seedDoc.split("\n"), ...corpus.slice(0, 50_000).split("\n")]) {
      expectSameAsOracle(line);
      expectRoundTrip(line);
    }
  });

  it("on text with lone surrogates (both encode them as U+FFFD)", () => {
    for (const s of [
      "\uD800",
      "a\uDC00b",
      "\uDBFF\uDBFF",
      "x \uD83D",
      "\uDE00😀",
      "'\uD800s",
      " \uDFFF1",
    ]) {
      expectSameAsOracle(s);
      expect(tok.decode(tok.encode(s))).toBe(
        (s as string & { toWellFormed(): string }).toWellFormed(),
      );
    }
  });
});

describe(`GPT-2 ids equal js-tiktoken's on ${4 * RUNS_PER_ARBITRARY} random strings (fast-check seed ${SEED})`, () => {
  // Printed so a failure can be replayed: fc.assert(..., { seed, path }) with the reported path.
  console.info(`oracle.test.ts: fast-check seed ${SEED}, ${RUNS_PER_ARBITRARY} runs per arbitrary`);

  const whitespaceAndPunctuation = fc.constantFrom(
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\u000b",
    "\u000c",
    "\u00a0",
    "\u2003",
    "\u3000",
    "\u2028",
    "\u0085",
    "\ufeff",
    ".",
    ",",
    "!",
    "?",
    ";",
    "-",
    "—",
    "(",
    ")",
    '"',
    "“",
    "”",
    "'",
    "’",
    "'s",
    "'t",
    "'re",
    "'ve",
    "'m",
    "'ll",
    "'d",
    "'S",
    "a",
    "Z",
    "é",
    "e\u0301",
    "ß",
    "1",
    "42",
    "٣",
    "中",
    "한",
    "😀",
    "👍🏽",
    "\u200d",
    "\u0301",
    "_",
    "$",
    "#",
  );
  const arbitraries: Array<[string, fc.Arbitrary<string>]> = [
    ["graphemes", fc.string({ unit: "grapheme", maxLength: 40 })],
    ["full Unicode code points", fc.string({ unit: "binary", maxLength: 40 })],
    [
      "whitespace, punctuation, contractions",
      fc.string({ unit: whitespaceAndPunctuation, maxLength: 40 }),
    ],
    [
      "ASCII incl. control characters, mixed with words",
      fc.string({
        unit: fc.oneof(
          fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 3 }),
          fc.constantFrom(" the", " of", "ing", " 2024", "\n\n"),
        ),
        maxLength: 30,
      }),
    ],
  ];

  for (const [name, arb] of arbitraries) {
    it(name, () => {
      fc.assert(
        fc.property(arb, (s) => {
          expectSameAsOracle(s);
          expectRoundTrip(s);
        }),
        { seed: SEED, numRuns: RUNS_PER_ARBITRARY },
      );
    });
  }
});

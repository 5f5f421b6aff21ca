import { describe, expect, it } from "vitest";
import { Tokenizer } from "./bpe.js";
import { tokenizeCommand, visibleWhitespace } from "./cli.js";
import { trainBpe } from "./train.js";

describe("visibleWhitespace", () => {
  it("shows space, newline, carriage return and tab as symbols (the doc example)", () => {
    expect(visibleWhitespace(" world\n")).toBe("␣world↵");
    expect(visibleWhitespace("\r\n\t")).toBe("␍↵⇥");
  });

  it("shows other whitespace, control and format characters as code points", () => {
    expect(visibleWhitespace("a\u00a0b\u200dc\u0000\u3000")).toBe(
      "a<U+00A0>b<U+200D>c<U+0000><U+3000>",
    );
  });

  it("leaves other text alone", () => {
    expect(visibleWhitespace("héllo,世界😀<0xE2>")).toBe("héllo,世界😀<0xE2>");
  });
});

describe("tokenizeCommand", () => {
  it("renders JSON with text, ids and raw pieces (the doc example)", () => {
    expect(tokenizeCommand("Hello, world!", { json: true })).toBe(
      '{"schema_version":1,"text":"Hello, world!","ids":[15496,11,995,0],"pieces":["Hello",","," world","!"]}',
    );
  });

  it("renders JSON pieces that decode back to the text", () => {
    const text = "Tabs\tand\r\nnewlines, 😀 and 中文.";
    const out = JSON.parse(tokenizeCommand(text, { json: true })) as {
      text: string;
      ids: number[];
      pieces: string[];
    };
    expect(out.text).toBe(text);
    expect(out.ids).toEqual(Tokenizer.gpt2().encode(text));
    expect(out.pieces).toEqual(Tokenizer.gpt2().decodePieces(out.ids));
    expect(Tokenizer.gpt2().decode(out.ids)).toBe(text);
  });

  it("renders a table with visible whitespace and a summary", () => {
    expect(tokenizeCommand("Hello, world!\n", { json: false })).toBe(
      [
        "index     id  piece",
        "    0  15496  Hello",
        "    1     11  ,",
        "    2    995  ␣world",
        "    3      0  !",
        "    4    198  ↵",
        "5 tokens, 14 characters, 14 bytes",
      ].join("\n"),
    );
  });

  it("shows the bytes of partial characters in the table", () => {
    const table = tokenizeCommand(" 😀", { json: false }).split("\n");
    expect(table[1]).toMatch(/^ {4}0 +\d+ {2}␣<0xF0><0x9F><0x98>$/);
    expect(table[2]).toMatch(/^ {4}1 +\d+ {2}<0x80>$/);
    expect(table[3]).toBe("2 tokens, 2 characters, 5 bytes");
  });

  it("renders empty text", () => {
    expect(tokenizeCommand("", { json: false })).toBe(
      "index  id  piece\n0 tokens, 0 characters, 0 bytes",
    );
    expect(tokenizeCommand("", { json: true })).toBe(
      '{"schema_version":1,"text":"","ids":[],"pieces":[]}',
    );
  });

  it("passes special-token handling through", () => {
    expect(() => tokenizeCommand("<|endoftext|>", { json: true })).toThrow(
      'the special token "<|endoftext|>" at index 0, which is not allowed',
    );
    expect(tokenizeCommand("<|endoftext|>", { json: true, allowedSpecial: "all" })).toBe(
      '{"schema_version":1,"text":"<|endoftext|>","ids":[50256],"pieces":["<|endoftext|>"]}',
    );
  });

  it("uses another tokenizer when given one", () => {
    const t = trainBpe("aaabdaaabac", 259);
    expect(tokenizeCommand("aaab", { json: true, tokenizer: t })).toBe(
      '{"schema_version":1,"text":"aaab","ids":[258],"pieces":["aaab"]}',
    );
  });
});

import { describe, expect, test } from "vitest";
import { textTable } from "./text.js";

describe("textTable", () => {
  test("pads each column to its widest cell, two spaces apart, with a rule under the header", () => {
    expect(
      textTable(
        ["name", "n"],
        [
          ["layer_norm", "12"],
          ["gelu", "3"],
        ],
      ),
    ).toEqual(["name        n", "----------  --", "layer_norm  12", "gelu        3"]);
  });
  test("a missing cell is empty, a header wider than its cells sets the width", () => {
    expect(textTable(["a", "column"], [["x"]])).toEqual(["a  column", "-  ------", "x"]);
  });
  test("measures with the given width and styles the header line", () => {
    const plain = (s: string) => s.replace(/\*/g, "");
    const t = textTable(["k", "v"], [["*x*", "1"]], {
      width: (s) => plain(s).length,
      header: (l) => `<${l}>`,
    });
    expect(t).toEqual(["<k  v>", "-  -", "*x*  1"]);
  });
  test("many rows do not overflow the call stack", () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => [String(i)]);
    expect(textTable(["i"], rows)[1]).toBe("------");
  });
});

import { describe, expect, it } from "vitest";
import { columnsCsv, parseCsv, toCsv } from "./csv.js";

describe("toCsv / parseCsv", () => {
  it("quotes what needs quoting and reads it back", () => {
    const rows = [
      { name: 'a "quoted", comma', v: 0.1 + 0.2, ok: true },
      { name: "two\nlines", v: -1e-300, ok: false },
      { name: "plain", v: Number.NaN, ok: true },
    ];
    const text = toCsv(["name", "v", "ok"], rows);
    expect(text.split("\n")[0]).toBe("name,v,ok");
    expect(text).toContain('"a ""quoted"", comma"');
    const back = parseCsv(text);
    expect(back.columns).toEqual(["name", "v", "ok"]);
    expect(back.rows.map((r) => r["name"])).toEqual(rows.map((r) => r.name));
    // numbers are written with enough digits to read back the same double
    expect(Number(back.rows[0]!["v"])).toBe(0.1 + 0.2);
    expect(Number(back.rows[1]!["v"])).toBe(-1e-300);
    expect(back.rows[2]!["v"]).toBe("NaN");
    expect(back.rows[1]!["ok"]).toBe("false");
  });
  it("accepts CRLF line ends", () => {
    expect(parseCsv("a,b\r\n1,2\r\n").rows).toEqual([{ a: "1", b: "2" }]);
  });
  it("names a missing or unknown column", () => {
    expect(() => toCsv(["a", "b"], [{ a: 1 }])).toThrow('row 0: no value for column "b"');
    expect(() => toCsv(["a"], [{ a: 1, c: 2 }])).toThrow('row 0: column "c" is not one of a');
    expect(() => toCsv([], [])).toThrow("at least one column");
  });
  it("names the line of malformed input", () => {
    expect(() => parseCsv("a,b\n1,2,3\n")).toThrow("line 2: 3 fields but the header has 2");
    expect(() => parseCsv('a\n"open\n')).toThrow("line 2: a quoted field is never closed");
    expect(() => parseCsv('a\nx"y\n')).toThrow("line 2: a quote inside an unquoted field");
    expect(() => parseCsv("")).toThrow("empty CSV: no header row");
  });
});

describe("columnsCsv", () => {
  it("writes the named fields in column order and leaves the others out", () => {
    const rows = [{ b: "x", a: 1, perSeed: [1, 2] }];
    expect(columnsCsv(["a", "b"], rows)).toBe("a,b\n1,x\n");
  });
  it("names a missing column", () => {
    const rows = [{ a: 1 }] as unknown as { a: number; b: number }[];
    expect(() => columnsCsv(["a", "b"], rows)).toThrow('row 0: no value for column "b"');
  });
});

describe("the TSDoc examples", () => {
  it("hold as written", () => {
    expect(toCsv(["a", "b"], [{ a: 1, b: "x,y" }])).toBe('a,b\n1,"x,y"\n');
    const runs = [{ a: 1, perSeed: [1, 2] }];
    expect(columnsCsv(["a"], runs)).toBe("a\n1\n");
  });
});

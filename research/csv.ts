/**
 * CSV as the studies write it (RFC 4180: comma-separated, a header row, fields with commas,
 * quotes or newlines quoted, quotes doubled, lines ending in \n) and a reader for it.
 */

class CsvError extends Error {
  override name = "CsvError";
}

export type Cell = string | number | boolean;
export type CsvRow = Readonly<Record<string, Cell>>;

function formatCell(v: Cell, column: string, row: number): string {
  let s: string;
  if (typeof v === "number") {
    if (Number.isNaN(v)) s = "NaN";
    else if (!Number.isFinite(v)) s = v > 0 ? "Infinity" : "-Infinity";
    // shortest text that reads back as the same double
    else s = String(v);
  } else if (typeof v === "boolean") s = v ? "true" : "false";
  else if (typeof v === "string") s = v;
  else throw new CsvError(`row ${row}, column ${column}: cannot write a ${typeof v}`);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Rows as CSV with exactly `columns`, in that order.
 * @throws CsvError when a row lacks a column or has one not listed.
 * @example toCsv(["a", "b"], [{ a: 1, b: "x,y" }]) // 'a,b\n1,"x,y"\n'
 */
export function toCsv(columns: readonly string[], rows: readonly CsvRow[]): string {
  if (columns.length === 0) throw new CsvError("a CSV needs at least one column");
  const known = new Set(columns);
  const lines = [columns.map((c, i) => formatCell(c, `#${i}`, 0)).join(",")];
  rows.forEach((r, i) => {
    for (const k of Object.keys(r))
      if (!known.has(k))
        throw new CsvError(`row ${i}: column "${k}" is not one of ${columns.join(", ")}`);
    lines.push(
      columns
        .map((c) => {
          const v = r[c];
          if (v === undefined) throw new CsvError(`row ${i}: no value for column "${c}"`);
          return formatCell(v, c, i);
        })
        .join(","),
    );
  });
  return `${lines.join("\n")}\n`;
}

/**
 * Records as CSV with exactly `columns`: each record's fields of those names, in that order; its
 * other fields (per-seed arrays and the like) are left out.
 * @throws CsvError when a record lacks a column.
 * @example
 * const runs = [{ a: 1, perSeed: [1, 2] }];
 * columnsCsv(["a"], runs); // 'a\n1\n'
 */
export function columnsCsv<C extends string>(
  columns: readonly C[],
  records: readonly Readonly<Record<C, Cell>>[],
): string {
  return toCsv(
    columns,
    records.map((r) => Object.fromEntries(columns.map((c) => [c, r[c]]))),
  );
}

/**
 * Parse CSV text into its header and rows of strings (keyed by column).
 * @throws CsvError naming the line of an unterminated quote or a row with the wrong number of fields.
 */
export function parseCsv(text: string): { columns: string[]; rows: Record<string, string>[] } {
  const records: string[][] = [];
  let field = "";
  let rec: string[] = [];
  let quoted = false;
  let line = 1;
  let quoteLine = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (c === "\n") line++;
        field += c;
      }
      continue;
    }
    if (c === '"') {
      if (field !== "") throw new CsvError(`line ${line}: a quote inside an unquoted field`);
      quoted = true;
      quoteLine = line;
    } else if (c === ",") {
      rec.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      rec.push(field);
      records.push(rec);
      rec = [];
      field = "";
      line++;
    } else field += c;
  }
  if (quoted) throw new CsvError(`line ${quoteLine}: a quoted field is never closed`);
  if (field !== "" || rec.length > 0) {
    rec.push(field);
    records.push(rec);
  }
  const [header, ...body] = records;
  if (header === undefined) throw new CsvError("empty CSV: no header row");
  const rows = body.map((r, i) => {
    if (r.length !== header.length)
      throw new CsvError(`line ${i + 2}: ${r.length} fields but the header has ${header.length}`);
    const o: Record<string, string> = {};
    header.forEach((h, j) => (o[h] = r[j]!));
    return o;
  });
  return { columns: header, rows };
}

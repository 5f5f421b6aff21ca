/**
 * Plain-text tables for terminal reports (golden listings, law runs, gradient checks, verify).
 */

/** How a table measures and decorates its cells. */
export interface TextTableStyle {
  /** The displayed width of a cell (default: its UTF-16 length; verify strips ANSI colours). */
  readonly width?: (cell: string) => number;
  /** Applied to the header line after padding (e.g. bold). */
  readonly header?: (line: string) => string;
}

/**
 * Rows padded to each column's widest cell, columns two spaces apart, trailing blanks trimmed,
 * a dashed rule under the header. A missing cell counts as empty.
 */
export function textTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  style: TextTableStyle = {},
): string[] {
  const width = style.width ?? ((s: string) => s.length);
  // a reduce, not Math.max(...rows): a spread of many rows overflows the call stack
  const widths = header.map((h, c) =>
    rows.reduce((w, r) => Math.max(w, width(r[c] ?? "")), width(h)),
  );
  const line = (r: readonly string[]) =>
    r
      .map((cell, c) => cell + " ".repeat(Math.max(0, widths[c]! - width(cell))))
      .join("  ")
      .trimEnd();
  const head = line(header);
  return [
    style.header ? style.header(head) : head,
    line(widths.map((w) => "-".repeat(w))),
    ...rows.map(line),
  ];
}

/**
 * Printing dim polynomials: `4 d_model^2 + 2 d_model d_ff + 9 d_model + d_ff`, in text and LaTeX,
 * highest degree first. Used for symbolic parameter counts.
 */
import { canonicalPoly, substituteDims, type Dim } from "./dims.js";
import { dimLatex } from "./render.js";

export interface PolyText {
  readonly text: string;
  readonly latex: string;
}

/** Canonical polynomial of `d` after substituting `subst`, printed. */
export function polynomial(
  d: Dim,
  subst: ReadonlyMap<string, Dim> = new Map(),
  _keep?: ReadonlyMap<string, number>,
): PolyText {
  const p = canonicalPoly(substituteDims(d, subst));
  if (p === null) return { text: String(d), latex: String(d) };
  const terms = [...p.entries()].map(([mono, c]) => {
    const factors =
      mono === ""
        ? []
        : mono.split("*").map((f) => {
            const [n, e] = f.split("^") as [string, string];
            return { n, e: Number(e) };
          });
    const degree = factors.reduce((a, f) => a + f.e, 0);
    return { c, factors, degree, mono };
  });
  terms.sort((a, b) => b.degree - a.degree || (a.mono < b.mono ? -1 : 1));
  const fmtCoef = (c: number) =>
    Number.isInteger(c) ? String(c) : c.toPrecision(6).replace(/0+$/, "");
  const one = (fmt: "text" | "latex") =>
    terms
      .map((t, i) => {
        const sign = t.c < 0 ? " - " : i === 0 ? "" : " + ";
        const c = Math.abs(t.c);
        const body = t.factors
          .map((f) => {
            const name = fmt === "latex" ? dimLatex(f.n) : f.n;
            if (f.e === 1) return name;
            return fmt === "latex" ? `${name}^{${f.e}}` : `${name}^${f.e}`;
          })
          .join(fmt === "latex" ? " " : "·");
        const coef = c === 1 && body !== "" ? "" : fmtCoef(c);
        const sep = coef !== "" && body !== "" ? (fmt === "latex" ? " " : "·") : "";
        return `${i === 0 && t.c < 0 ? "-" : sign}${coef}${sep}${body}`;
      })
      .join("");
  return { text: one("text") || "0", latex: one("latex") || "0" };
}

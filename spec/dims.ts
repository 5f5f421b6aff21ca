/**
 * Symbolic dimensions.
 *
 * A dim is a name (`"n"`, `"d_model"`), a non-negative integer, or an arithmetic expression of
 * those (`d_model / H`, `offset + n`, `(H + 2 H_kv) d_k`). Two dims are *known equal* when their
 * canonical polynomials agree; otherwise equality is a constraint checked when sizes are bound.
 *
 * The leading batch prefix of a shape is written `"..."`: zero or more axes whose sizes are bound
 * from the actual tensors and shared by every input of a formula.
 */

export type Dim = string | number | DimOp;
export interface DimOp {
  readonly op: "+" | "-" | "*" | "/";
  readonly a: Dim;
  readonly b: Dim;
}
/** A symbolic shape: dims, optionally starting with the batch prefix `"..."`. */
export type SymShape = readonly Dim[];

export const BATCH = "...";

export class DimError extends Error {
  override name = "DimError";
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parse `"d_model/H"`, `"offset+n"`, `"2*d_k"`; names and integers pass through. */
export function dim(src: string | number): Dim {
  if (typeof src === "number") {
    if (!Number.isInteger(src) || src < 0)
      throw new DimError(`dim ${src}: constant dims must be non-negative integers`);
    return src;
  }
  const s = src.trim();
  if (s === BATCH) return BATCH;
  if (IDENT.test(s)) return s;
  if (/^\d+$/.test(s)) return Number(s);
  return parseDimExpr(s);
}

function parseDimExpr(src: string): Dim {
  const toks = src.match(/[A-Za-z_][A-Za-z0-9_]*|\d+|[-+*/()]/g);
  if (toks === null || toks.join("") !== src.replace(/\s+/g, "")) {
    throw new DimError(`cannot parse dim expression "${src}"`);
  }
  let i = 0;
  const peek = (): string | undefined => toks[i];
  type Op = "+" | "-" | "*" | "/";
  /** A left-associative run `operand (op operand)*` of the operators `ops`. */
  const run = (ops: readonly Op[], operand: () => Dim) => (): Dim => {
    let left = operand();
    while (ops.includes(peek() as Op)) {
      const op = toks[i++] as Op;
      left = { op, a: left, b: operand() };
    }
    return left;
  };
  const term = run(["*", "/"], () => atom());
  const expr = run(["+", "-"], term);
  const atom = (): Dim => {
    const t = toks[i++];
    if (t === undefined) throw new DimError(`dim expression "${src}" ends early`);
    if (t === "(") {
      const e = expr();
      if (toks[i++] !== ")") throw new DimError(`dim expression "${src}": missing ")"`);
      return e;
    }
    if (/^\d+$/.test(t)) return Number(t);
    if (IDENT.test(t)) return t;
    throw new DimError(`dim expression "${src}": unexpected "${t}"`);
  };
  const e = expr();
  if (i !== toks.length) throw new DimError(`dim expression "${src}": unexpected "${toks[i]}"`);
  return e;
}

/** The number of rows of a shape's batch prefix, as a dim (usable as an explicit axis). */
export const BATCH_ROWS: Dim = { op: "*", a: BATCH, b: 1 };

export const mulDim = (a: Dim, b: Dim): Dim => (a === 1 ? b : b === 1 ? a : { op: "*", a, b });
export const divDim = (a: Dim, b: Dim): Dim => (b === 1 ? a : { op: "/", a, b });
export const addDim = (a: Dim, b: Dim): Dim => (a === 0 ? b : b === 0 ? a : { op: "+", a, b });
export const subDim = (a: Dim, b: Dim): Dim => (b === 0 ? a : { op: "-", a, b });

function prec(d: Dim): number {
  if (typeof d !== "object") return 3;
  return d.op === "+" || d.op === "-" ? 1 : 2;
}

/** `d_model/H`, `(H + 2*H_kv)*d_k`. */
export function dimToString(d: Dim): string {
  if (typeof d === "number") return String(d);
  if (typeof d === "string") return d;
  const p = prec(d);
  const l = prec(d.a) < p ? `(${dimToString(d.a)})` : dimToString(d.a);
  const rightNeedsParens = prec(d.b) < p || (prec(d.b) === p && (d.op === "-" || d.op === "/"));
  const r = rightNeedsParens ? `(${dimToString(d.b)})` : dimToString(d.b);
  return `${l}${d.op}${r}`;
}

export function shapeToString(s: SymShape): string {
  return `[${s.map(dimToString).join(", ")}]`;
}

/** Names a dim mentions. */
export function dimNames(d: Dim, into: Set<string> = new Set()): Set<string> {
  if (typeof d === "string") into.add(d);
  else if (typeof d === "object") {
    dimNames(d.a, into);
    dimNames(d.b, into);
  }
  return into;
}

/** `d` with every name that `s` maps replaced by its dim (once: the result is not rescanned). */
export function substituteDims(d: Dim, s: ReadonlyMap<string, Dim>): Dim {
  if (typeof d === "string") return s.get(d) ?? d;
  if (typeof d === "number") return d;
  return { op: d.op, a: substituteDims(d.a, s), b: substituteDims(d.b, s) };
}

// ---------------------------------------------------------------------------------------------
// Canonical form: a polynomial with rational coefficients over monomials of names with integer
// (possibly negative) exponents. Equal canonical forms ⇒ equal dims for every binding.

type Monomial = string; // "H^1*d_k^1", sorted; "" is the constant monomial
type Poly = Map<Monomial, number>;

function monoKey(m: Map<string, number>): Monomial {
  return [...m.entries()]
    .filter(([, e]) => e !== 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([n, e]) => `${n}^${e}`)
    .join("*");
}

function monoParse(k: Monomial): Map<string, number> {
  const m = new Map<string, number>();
  if (k === "") return m;
  for (const part of k.split("*")) {
    const [n, e] = part.split("^");
    m.set(n!, Number(e));
  }
  return m;
}

function polyAdd(p: Poly, q: Poly, sign = 1): Poly {
  const r = new Map(p);
  for (const [k, c] of q) {
    const v = (r.get(k) ?? 0) + sign * c;
    if (Math.abs(v) < 1e-12) r.delete(k);
    else r.set(k, v);
  }
  return r;
}

function polyMul(p: Poly, q: Poly): Poly {
  let r: Poly = new Map();
  for (const [ka, ca] of p) {
    for (const [kb, cb] of q) {
      const m = monoParse(ka);
      for (const [n, e] of monoParse(kb)) m.set(n, (m.get(n) ?? 0) + e);
      r = polyAdd(r, new Map([[monoKey(m), ca * cb]]));
    }
  }
  return r;
}

/** The canonical polynomial of a dim (monomial key → coefficient), or null when not polynomial. */
export function canonicalPoly(d: Dim): ReadonlyMap<string, number> | null {
  return canon(d);
}

function canon(d: Dim): Poly | null {
  if (typeof d === "number") return d === 0 ? new Map() : new Map([["", d]]);
  if (typeof d === "string") return new Map([[`${d}^1`, 1]]);
  const a = canon(d.a);
  const b = canon(d.b);
  if (a === null || b === null) return null;
  switch (d.op) {
    case "+":
      return polyAdd(a, b);
    case "-":
      return polyAdd(a, b, -1);
    case "*":
      return polyMul(a, b);
    case "/": {
      // Division is canonicalised only by a single monomial (d_model/H, n/2).
      if (b.size !== 1) return null;
      const [[k, c]] = [...b.entries()] as [[string, number]];
      const inv = new Map<string, number>();
      for (const [n, e] of monoParse(k)) inv.set(n, -e);
      return polyMul(a, new Map([[monoKey(inv), 1 / c]]));
    }
  }
}

function polyKey(p: Poly): string {
  return [...p.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, c]) => `${c}:${k}`)
    .join("+");
}

/** True when the two dims are equal for every binding of their names. */
export function dimsEqual(a: Dim, b: Dim): boolean {
  if (a === b) return true;
  const pa = canon(a);
  const pb = canon(b);
  if (pa === null || pb === null) return dimToString(a) === dimToString(b);
  return polyKey(pa) === polyKey(pb);
}

/** The integer a dim is for every binding, or undefined. */
export function dimConstant(d: Dim): number | undefined {
  if (typeof d === "number") return d;
  const p = canon(d);
  if (p === null) return undefined;
  if (p.size === 0) return 0;
  if (p.size === 1 && p.has("")) return p.get("");
  return undefined;
}

/**
 * Decide whether two dims may be equal at run time. "no" when both are constants that differ,
 * or both are distinct plain names (independent dims are never silently unified); "yes" when
 * known equal; "maybe" when a relation between compound dims must be checked at binding.
 */
export function dimsCompatible(a: Dim, b: Dim): "yes" | "no" | "maybe" {
  if (dimsEqual(a, b)) return "yes";
  const ca = dimConstant(a);
  const cb = dimConstant(b);
  if (ca !== undefined && cb !== undefined) return "no";
  if (typeof a === "string" && typeof b === "string") return "no";
  return "maybe";
}

/** Evaluate a dim under a binding; undefined if a name is unbound. Throws on inexact division. */
export function evalDim(d: Dim, env: ReadonlyMap<string, number>): number | undefined {
  if (typeof d === "number") return d;
  if (typeof d === "string") return env.get(d);
  const a = evalDim(d.a, env);
  const b = evalDim(d.b, env);
  if (a === undefined || b === undefined) return undefined;
  switch (d.op) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      if (b === 0 || a % b !== 0) {
        throw new DimError(
          `${dimToString(d)} = ${a}/${b} is not an integer (${dimToString(d.a)} ` +
            `must be divisible by ${dimToString(d.b)})`,
        );
      }
      return a / b;
  }
}

/**
 * Solve `d = value` for its single unbound name when `d` is linear in it
 * (`d_model/H = 8` with d_model bound, `H*d_k = 384` with H bound, `offset + n = 9`).
 * Returns [name, value] or undefined when not solvable that way.
 */
export function solveFor(
  d: Dim,
  value: number,
  env: ReadonlyMap<string, number>,
): [string, number] | undefined {
  const unknown = [...dimNames(d)].filter((n) => !env.has(n));
  if (unknown.length !== 1) return undefined;
  const name = unknown[0]!;
  // d is built from + - * /; walk down the path to the unknown inverting each step.
  const invert = (e: Dim, target: number): [string, number] | undefined => {
    if (typeof e === "string") return e === name ? [e, target] : undefined;
    if (typeof e === "number") return undefined;
    const aHas = dimNames(e.a).has(name);
    const other = aHas ? evalDim(e.b, env) : evalDim(e.a, env);
    if (other === undefined) return undefined;
    const sub = aHas ? e.a : e.b;
    switch (e.op) {
      case "+":
        return invert(sub, target - other);
      case "-":
        return invert(sub, aHas ? target + other : other - target);
      case "*":
        if (other === 0) return undefined;
        if (target % other !== 0)
          throw new DimError(
            `${dimToString(e)} = ${target} has no integer solution: ${target} is not divisible by ${other}`,
          );
        return invert(sub, target / other);
      case "/":
        if (aHas) return invert(sub, target * other);
        if (target === 0 || other % target !== 0)
          throw new DimError(`${dimToString(e)} = ${target} has no integer solution`);
        return invert(sub, other / target);
    }
  };
  return invert(d, value);
}

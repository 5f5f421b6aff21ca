/**
 * One shape rule per primitive. Given an op's operands and attributes it returns the output's
 * symbolic shape, element type and the dim equalities left to check at binding. Mismatches that are
 * certain (two different constants, two different plain dim names) are errors at build time.
 */
import {
  BATCH,
  addDim,
  dimConstant,
  dimToString,
  dimsCompatible,
  mulDim,
  shapeToString,
  type Dim,
  type SymShape,
} from "./dims.js";
import type { Constraint, ElemType, Node } from "./node.js";

export class ShapeError extends Error {
  override name = "ShapeError";
}

/** The formula whose body is being built, innermost last (only for messages). */
const scopeStack: string[] = [];
export function withScope<T>(formula: string, f: () => T): T {
  scopeStack.push(formula);
  try {
    return f();
  } finally {
    scopeStack.pop();
  }
}
export function currentScope(): string | undefined {
  return scopeStack[scopeStack.length - 1];
}
function where(): string {
  const s = currentScope();
  return s === undefined ? "" : ` in formula ${s}`;
}

export interface ShapeResult {
  shape: SymShape;
  dtype: ElemType;
  constraints: Constraint[];
}

/** Node fields before the shape rule has run. */
export type NodeRequest = DistributiveOmit<
  Node,
  "id" | "shape" | "dtype" | "constraints" | "label" | "scope"
> & {
  /** Target shape for input, iota, reshape, broadcast, slice (the slice size), scatter_add. */
  target?: SymShape;
  /** Element type for input. */
  elem?: ElemType;
};
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export const hasBatch = (s: SymShape): boolean => s[0] === BATCH;
export const explicitDims = (s: SymShape): SymShape => (hasBatch(s) ? s.slice(1) : s);

/** Unify two dims: the result dim and any constraint, or a ShapeError. */
function unify(a: Dim, b: Dim, what: string, constraints: Constraint[]): Dim {
  const c = dimsCompatible(a, b);
  if (c === "no") throw new ShapeError(`${what}${where()}: ${dimToString(a)} ≠ ${dimToString(b)}`);
  if (c === "maybe") constraints.push({ a, b, why: `${what}${where()}` });
  return a;
}

/** NumPy broadcasting of symbolic shapes (right-aligned; the batch prefix aligns with itself). */
export function broadcastShapes(
  shapes: readonly SymShape[],
  what: string,
  constraints: Constraint[],
): SymShape {
  let out: SymShape = [];
  let outBatch = false;
  for (const s of shapes) {
    const sb = hasBatch(s);
    const se = explicitDims(s);
    const oe = out;
    if (sb && !outBatch && oe.length > se.length) {
      throw new ShapeError(
        `${what}${where()}: ${shapeToString(s)} cannot broadcast with a shape ` +
          `of ${oe.length} explicit axes; an operand without the batch prefix ` +
          `"..." must not have more axes than the explicit axes of one with it`,
      );
    }
    if (!sb && outBatch && se.length > oe.length) {
      throw new ShapeError(
        `${what}${where()}: ${shapeToString(s)} has more axes than the explicit ` +
          `axes of ${shapeToString([BATCH, ...oe])}`,
      );
    }
    const n = Math.max(se.length, oe.length);
    const res: Dim[] = [];
    for (let i = 0; i < n; i++) {
      const a = oe[oe.length - n + i];
      const b = se[se.length - n + i];
      if (a === undefined) res.push(b!);
      else if (b === undefined) res.push(a);
      else if (dimConstant(a) === 1) res.push(b);
      else if (dimConstant(b) === 1) res.push(a);
      else
        res.push(
          unify(
            a,
            b,
            `${what}: axis ${i - n} of ${shapeToString(s)} against ${shapeToString(outBatch ? [BATCH, ...oe] : oe)}`,
            constraints,
          ),
        );
    }
    out = res;
    outBatch = outBatch || sb;
  }
  return outBatch ? [BATCH, ...out] : out;
}

function productDim(dims: SymShape): Dim {
  let p: Dim = 1;
  for (const d of dims) p = mulDim(p, d);
  return p;
}

function checkAxis(s: SymShape, axis: number, what: string, allowBatch = false): void {
  if (!Number.isInteger(axis) || axis < 0 || axis >= s.length) {
    throw new ShapeError(`${what}${where()}: axis ${axis} is out of range for ${shapeToString(s)}`);
  }
  if (!allowBatch && s[axis] === BATCH)
    throw new ShapeError(
      `${what}${where()}: axis ${axis} is the batch prefix "..." of ${shapeToString(s)}`,
    );
}

/** Normalise a possibly negative axis against a symbolic shape. */
export function normAxis(s: SymShape, axis: number): number {
  return axis < 0 ? s.length + axis : axis;
}

export function shapeRule(r: NodeRequest): ShapeResult {
  const constraints: Constraint[] = [];
  const res = (shape: SymShape, dtype: ElemType = "float"): ShapeResult => ({
    shape,
    dtype,
    constraints,
  });
  switch (r.op) {
    case "input": {
      return res(r.target ?? [], r.elem ?? "float");
    }
    case "const": {
      return res([]);
    }
    case "dim": {
      return res([]);
    }
    case "iota": {
      const s = r.target ?? [];
      if (hasBatch(s))
        throw new ShapeError(
          `iota${where()}: shape ${shapeToString(s)} must not have a batch prefix`,
        );
      checkAxis(s, r.axis, "iota");
      return res(s);
    }
    case "unary": {
      return res(r.x.shape);
    }
    case "binary": {
      const shape = broadcastShapes([r.a.shape, r.b.shape], `${r.fn}`, constraints);
      const intOp =
        r.a.dtype === "int" &&
        r.b.dtype === "int" &&
        ["add", "sub", "mul", "max", "min"].includes(r.fn);
      return res(shape, intOp ? "int" : "float");
    }
    case "reduce": {
      const s = r.x.shape;
      const axes = new Set(r.axes);
      if (axes.size !== r.axes.length)
        throw new ShapeError(
          `reduce ${r.fn}${where()}: repeated axis in ${JSON.stringify(r.axes)}`,
        );
      for (const a of r.axes) checkAxis(s, a, `reduce ${r.fn}`, true);
      if (r.keepdims && hasBatch(s) && axes.has(0)) {
        throw new ShapeError(
          `reduce ${r.fn}${where()}: cannot keep the reduced batch prefix "..." ` +
            `(its rank is unknown); use keepdims=false`,
        );
      }
      const out: Dim[] = [];
      s.forEach((d, i) => {
        if (!axes.has(i)) out.push(d);
        else if (r.keepdims) out.push(1);
      });
      return res(out, r.x.dtype);
    }
    case "reshape": {
      const t = r.target ?? [];
      if (hasBatch(t) && !hasBatch(r.x.shape)) {
        throw new ShapeError(
          `reshape${where()}: ${shapeToString(r.x.shape)} → ${shapeToString(t)} cannot introduce a batch prefix "..."`,
        );
      }
      if (t.slice(1).includes(BATCH))
        throw new ShapeError(`reshape${where()}: "..." may only lead a shape`);
      // Flattening the batch prefix into an axis is allowed: "..." counts as a dim (the number of batch rows).
      const count = (s: SymShape) =>
        hasBatch(s) && !hasBatch(t) ? productDim(s) : productDim(explicitDims(s));
      unify(
        count(r.x.shape),
        productDim(explicitDims(t)),
        `reshape ${shapeToString(r.x.shape)} → ${shapeToString(t)} (element counts)`,
        constraints,
      );
      return res(t, r.x.dtype);
    }
    case "permute": {
      const s = r.x.shape;
      const ok =
        r.perm.length === s.length && [...r.perm].sort((a, b) => a - b).every((v, i) => v === i);
      if (!ok)
        throw new ShapeError(
          `permute${where()}: ${JSON.stringify(r.perm)} is not a permutation of ` +
            `the ${s.length} axes of ${shapeToString(s)}`,
        );
      if (hasBatch(s) && r.perm[0] !== 0)
        throw new ShapeError(`permute${where()}: the batch prefix "..." must stay first`);
      return res(
        r.perm.map((p) => s[p]!),
        r.x.dtype,
      );
    }
    case "broadcast": {
      const t = r.target ?? [];
      const out = broadcastShapes(
        [r.x.shape, t],
        `broadcast ${shapeToString(r.x.shape)} to ${shapeToString(t)}`,
        constraints,
      );
      if (out.length !== t.length)
        throw new ShapeError(
          `broadcast${where()}: ${shapeToString(r.x.shape)} has more axes than ${shapeToString(t)}`,
        );
      return res(t, r.x.dtype);
    }
    case "slice": {
      const s = r.x.shape;
      checkAxis(s, r.axis, "slice");
      const size = r.target?.[0];
      if (size === undefined) throw new ShapeError(`slice${where()}: missing size`);
      const out = [...s];
      out[r.axis] = size;
      return res(out, r.x.dtype);
    }
    case "concat": {
      if (r.xs.length === 0) throw new ShapeError(`concat${where()}: nothing to concatenate`);
      const first = r.xs[0]!.shape;
      checkAxis(first, r.axis, "concat");
      let total: Dim = 0;
      for (const x of r.xs) {
        if (x.shape.length !== first.length || hasBatch(x.shape) !== hasBatch(first)) {
          throw new ShapeError(
            `concat${where()}: ${shapeToString(x.shape)} and ${shapeToString(first)} have different ranks`,
          );
        }
        x.shape.forEach((d, i) => {
          if (i !== r.axis && d !== BATCH)
            unify(
              d,
              first[i]!,
              `concat axis ${i} of ${shapeToString(x.shape)} against ${shapeToString(first)}`,
              constraints,
            );
        });
        total = addDim(total, x.shape[r.axis]!);
      }
      const out = [...first];
      out[r.axis] = total;
      return res(out, r.xs[0]!.dtype);
    }
    case "matmul": {
      const a = r.a.shape;
      const b = r.b.shape;
      if (
        hasBatch(a) &&
        explicitDims(a).length === 1 &&
        explicitDims(b).length === 2 &&
        !hasBatch(b)
      ) {
        // rows carried entirely by the batch prefix: [..., k] · [k, m] → [..., m]
        unify(
          a[a.length - 1]!,
          b[0]!,
          `matmul inner dims of ${shapeToString(a)} · ${shapeToString(b)}`,
          constraints,
        );
        return res([BATCH, b[1]!]);
      }
      if (explicitDims(a).length < 2 || explicitDims(b).length < 2) {
        throw new ShapeError(
          `matmul${where()}: operands need at least 2 axes, got ${shapeToString(a)} and ${shapeToString(b)}`,
        );
      }
      unify(
        a[a.length - 1]!,
        b[b.length - 2]!,
        `matmul inner dims of ${shapeToString(a)} · ${shapeToString(b)}`,
        constraints,
      );
      const batch = broadcastShapes(
        [a.slice(0, -2), b.slice(0, -2)],
        `matmul batch axes of ${shapeToString(a)} · ${shapeToString(b)}`,
        constraints,
      );
      return res([...batch, a[a.length - 2]!, b[b.length - 1]!]);
    }
    case "gather": {
      const t = r.table.shape;
      if (t.length < 1 || hasBatch(t))
        throw new ShapeError(
          `gather${where()}: table ${shapeToString(t)} needs at least one axis and no batch prefix`,
        );
      if (r.indices.dtype !== "int")
        throw new ShapeError(`gather${where()}: indices must be integers (token ids), got float`);
      return res([...r.indices.shape, ...t.slice(1)], r.table.dtype);
    }
    case "scatter_add": {
      const t = r.target ?? [];
      if (t.length < 1 || hasBatch(t))
        throw new ShapeError(
          `scatter_add${where()}: table shape ${shapeToString(t)} needs at least one axis and no batch prefix`,
        );
      if (r.indices.dtype !== "int")
        throw new ShapeError(`scatter_add${where()}: indices must be integers`);
      const expect = [...r.indices.shape, ...t.slice(1)];
      const u = r.updates.shape;
      if (u.length !== expect.length)
        throw new ShapeError(
          `scatter_add${where()}: updates ${shapeToString(u)} should be ${shapeToString(expect)}`,
        );
      u.forEach((d, i) => {
        if (d !== BATCH || expect[i] !== BATCH)
          unify(d, expect[i]!, `scatter_add updates axis ${i}`, constraints);
      });
      return res(t);
    }
    case "where": {
      const shape = broadcastShapes([r.cond.shape, r.a.shape, r.b.shape], "where", constraints);
      return res(shape, r.a.dtype === "int" && r.b.dtype === "int" ? "int" : "float");
    }
    case "stopgrad": {
      return res(r.x.shape, r.x.dtype);
    }
    case "call": {
      return res(r.body.shape, r.body.dtype);
    }
    default: {
      const unknown: never = r;
      throw new ShapeError(`no shape rule for op ${(unknown as { op: string }).op}`);
    }
  }
}

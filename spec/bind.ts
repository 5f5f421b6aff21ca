/**
 * Binding symbolic dims to sizes. Sizes come from hyperparameters and from the actual tensors;
 * relations (`d_model = H*d_k`) and the constraints left by shape rules are then solved in either
 * direction. A conflict names the formula, the tensor and axis, and where each size came from:
 *
 *   d_k = 48 (from d_model = H*d_k with d_model = 384, H = 8) but input K of formula attention has 64 at axis 1
 */
import {
  BATCH,
  dimNames,
  dimToString,
  evalDim,
  shapeToString,
  solveFor,
  DimError,
  type Dim,
  type SymShape,
} from "./dims.js";
import { topoSort, type Node } from "./node.js";

class BindError extends Error {
  override name = "BindError";
}

export interface Binding {
  /** Size of every named dim. */
  readonly dims: ReadonlyMap<string, number>;
  /** Where each size came from. */
  readonly sources: ReadonlyMap<string, string>;
  /** Sizes of the batch prefix "..." (empty when inputs have no leading axes). */
  readonly batch: readonly number[];
}

export interface TensorInfo {
  readonly shape: readonly number[];
  readonly dtype: string;
}

interface Eq {
  a: Dim;
  b: Dim;
  why: string;
}

export interface BindOptions {
  /** Formula name for messages. */
  readonly formula?: string;
  /** Dims fixed by hyperparameters (H = 8). */
  readonly hyper?: ReadonlyMap<string, number>;
  /** Extra relations (a formula's declared ones). */
  readonly relations?: readonly Eq[];
}

/** Bind every dim reachable from `roots` given the tensors for their inputs. */
export function bindDims(
  roots: readonly Node[],
  tensors: Readonly<Record<string, TensorInfo>>,
  opts: BindOptions = {},
): Binding {
  const f = opts.formula === undefined ? "" : ` of formula ${opts.formula}`;
  const env = new Map<string, number>();
  const sources = new Map<string, string>();
  const pending: Eq[] = [...(opts.relations ?? [])];
  let batch: number[] | undefined;
  let batchSource = "";

  const set = (name: string, value: number, source: string): void => {
    const prev = env.get(name);
    if (prev !== undefined) {
      if (prev !== value)
        throw new BindError(
          `${name} = ${prev} (${sources.get(name)}) but ${source} gives ${value}`,
        );
      return;
    }
    if (!Number.isInteger(value) || value < 0)
      throw new BindError(
        `${name} would be ${value} (${source}); sizes must be non-negative integers`,
      );
    env.set(name, value);
    sources.set(name, source);
  };

  const describe = (d: Dim): string => {
    const names = [...dimNames(d)].filter((n) => env.has(n));
    return names.map((n) => `${n} = ${env.get(n)}`).join(", ");
  };

  /** Solve or check `d = value`; `what` says who demands it. Returns false when it must wait. */
  const unifyValue = (d: Dim, value: number, what: string): boolean => {
    if (typeof d === "string") {
      const prev = env.get(d);
      if (prev !== undefined && prev !== value)
        throw new BindError(`${d} = ${prev} (${sources.get(d)}) but ${what} has ${value}`);
      set(d, value, what);
      return true;
    }
    let v: number | undefined;
    try {
      v = evalDim(d, env);
    } catch (e) {
      throw new BindError(`${what}: ${(e as Error).message}`);
    }
    if (v !== undefined) {
      if (v !== value)
        throw new BindError(
          `${dimToString(d)} = ${v} (with ${describe(d)}) but ${what} has ${value}`,
        );
      return true;
    }
    let solved: [string, number] | undefined;
    try {
      solved = solveFor(d, value, env);
    } catch (e) {
      throw new BindError(`${what}: ${(e as DimError).message}`);
    }
    if (solved === undefined) return false;
    const known = describe(d);
    set(
      solved[0],
      solved[1],
      `from ${dimToString(d)} = ${value}${known ? ` with ${known}` : ""}, ${what}`,
    );
    return true;
  };

  for (const [k, v] of opts.hyper ?? []) set(k, v, `hyperparameter ${k} = ${v}`);

  /** Solve `side = value` (from the equation a = b) for its one unknown; the source quotes the equation. */
  const deriveFrom = (side: Dim, value: number, a: Dim, b: Dim): boolean => {
    if (typeof side === "string" && !env.has(side)) {
      const other = side === a ? b : a;
      set(
        side,
        value,
        `from ${dimToString(side)} = ${dimToString(other)}${describe(other) ? ` with ${describe(other)}` : ""}`,
      );
      return true;
    }
    let solved: [string, number] | undefined;
    try {
      solved = solveFor(side, value, env);
    } catch (e) {
      throw new BindError(`${dimToString(a)} = ${dimToString(b)}: ${(e as DimError).message}`);
    }
    if (solved === undefined) return false;
    const known = [describe(a), describe(b)].filter(Boolean).join(", ");
    set(
      solved[0],
      solved[1],
      `from ${dimToString(a)} = ${dimToString(b)}${known ? ` with ${known}` : ""}`,
    );
    return true;
  };

  /** Solve the pending equations until nothing changes (relations first: they were pushed first). */
  const solvePending = (): void => {
    let progress = true;
    while (pending.length > 0 && progress) {
      progress = false;
      for (let i = 0; i < pending.length; i++) {
        const { a, b, why } = pending[i]!;
        let va: number | undefined;
        let vb: number | undefined;
        try {
          va = evalDim(a, env);
          vb = evalDim(b, env);
        } catch (e) {
          throw new BindError(`${why}: ${(e as Error).message}`);
        }
        let done = false;
        if (va !== undefined && vb !== undefined) {
          if (va !== vb) {
            throw new BindError(
              `${why}: ${dimToString(a)} = ${va} but ${dimToString(b)} = ${vb} ` +
                `(` +
                [...new Set([...dimNames(a), ...dimNames(b)])]
                  .map((k) => `${k} = ${env.get(k)} from ${sources.get(k)}`)
                  .join("; ") +
                `)`,
            );
          }
          done = true;
        } else if (va !== undefined) done = deriveFrom(b, va, a, b);
        else if (vb !== undefined) done = deriveFrom(a, vb, a, b);
        if (done) {
          pending.splice(i, 1);
          i--;
          progress = true;
        }
      }
    }
  };

  const nodes = topoSort(roots);
  for (const n of nodes) for (const c of n.constraints ?? []) pending.push(c);
  solvePending();
  // Inputs first, in a stable order, so messages name the first tensor that disagrees.
  for (const n of nodes) {
    if (n.op !== "input") continue;
    const t = tensors[n.name];
    if (t === undefined) {
      throw new BindError(
        `formula${f.replace(" of formula", "")} needs ${n.role} ${n.name} of ` +
          `shape ${shapeToString(n.shape)}, but it was not given`,
      );
    }
    const declared = n.shape;
    const hasBatch = declared[0] === BATCH;
    const explicit = hasBatch ? declared.slice(1) : declared;
    const actual = t.shape;
    if (hasBatch ? actual.length < explicit.length : actual.length !== explicit.length) {
      throw new BindError(
        `${n.role} ${n.name}${f} has shape [${actual.join(", ")}] (rank ` +
          `${actual.length}) but the formula declares ${shapeToString(declared)}`,
      );
    }
    const lead = actual.length - explicit.length;
    if (hasBatch) {
      const b = actual.slice(0, lead);
      if (batch === undefined) {
        batch = [...b];
        batchSource = `${n.role} ${n.name}`;
      } else if (b.length !== batch.length || b.some((x, i) => x !== batch![i])) {
        throw new BindError(
          `batch prefix "..." is [${batch.join(", ")}] (from ${batchSource}) but ` +
            `${n.role} ${n.name}${f} has [${b.join(", ")}]`,
        );
      }
    }
    explicit.forEach((d, i) => {
      const axis = lead + i;
      const what = `${n.role} ${n.name}${f} (shape [${actual.join(", ")}]) at axis ${axis}`;
      if (!unifyValue(d, actual[axis]!, what)) pending.push({ a: d, b: actual[axis]!, why: what });
    });
    // derive what this tensor implies now, so a later disagreement names the derivation
    solvePending();
  }
  solvePending();

  // Every dim a node needs must now be known.
  const need = new Set<string>();
  for (const n of nodes) {
    for (const d of n.shape) if (d !== BATCH) dimNames(d, need);
    if (n.op === "dim") dimNames(n.dim, need);
    if (n.op === "slice") dimNames(n.start, need);
  }
  need.delete(BATCH);
  env.delete(BATCH);
  const missing = [...need].filter((k) => !env.has(k)).sort();
  if (missing.length > 0) {
    throw new BindError(
      `cannot determine ${missing.join(", ")}${f}: give ` +
        `${missing.length > 1 ? "them" : "it"} as hyperparameters or through the inputs`,
    );
  }
  // "..." as a dim stands for the number of batch rows (the product of the prefix sizes).
  env.set(
    BATCH,
    (batch ?? []).reduce((a, b) => a * b, 1),
  );
  return { dims: env, sources, batch: batch ?? [] };
}

/** The concrete shape of a symbolic shape under a binding. */
export function concreteShape(s: SymShape, b: Binding): number[] {
  const out: number[] = [];
  for (const d of s) {
    if (d === BATCH) out.push(...b.batch);
    else {
      const v = evalDim(d, b.dims);
      if (v === undefined) throw new BindError(`dim ${dimToString(d)} is not bound`);
      if (v < 0) throw new BindError(`dim ${dimToString(d)} = ${v} is negative`);
      out.push(v);
    }
  }
  return out;
}

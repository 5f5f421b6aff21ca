/**
 * One VJP rule per primitive, each building spec graph (not numbers): the gradient of a formula is
 * itself a formula — renderable, shape-checked, evaluable and differentiable again.
 *
 * `rule(node, ȳ, y)` returns the cotangent of each operand (in `operands` order; undefined = no
 * gradient). Broadcast operands get their cotangent summed back to their shape (`unbroadcast`).
 */
import { match } from "ts-pattern";
import {
  BATCH,
  BATCH_ROWS,
  dimConstant,
  dimsEqual,
  subDim,
  addDim,
  mulDim,
  type Dim,
  type SymShape,
} from "../spec/dims.js";
import {
  Expr,
  add,
  constant,
  div,
  eq,
  exp,
  lt,
  make,
  mul,
  neg,
  reduce,
  square,
  sub,
  tanh,
  unary,
  where,
  matmul,
  transpose,
  cos,
  sin,
  concat,
  slice,
  gather,
} from "../spec/expr.js";
import { getFormula } from "../spec/formula.js";
import { operands, type Node, type NodeOf } from "../spec/node.js";
import type { ScalarFnName } from "../spec/scalar.js";
import { explicitDims, hasBatch } from "../spec/shape.js";

const E = (n: Node): Expr => new Expr(n);

/** Sum `g` down to `target` (undoing NumPy broadcasting). */
function unbroadcast(g: Expr, target: SymShape): Expr {
  const gs = g.shape;
  if (
    gs.length === target.length &&
    gs.every(
      (d, i) => d === target[i] || (d !== BATCH && target[i] !== BATCH && dimsEqual(d, target[i]!)),
    )
  )
    return g;
  const gb = hasBatch(gs);
  const tb = hasBatch(target);
  const ge = explicitDims(gs);
  const te = explicitDims(target);
  const off = ge.length - te.length;
  const lead: number[] = [];
  if (gb && !tb) lead.push(0);
  for (let i = 0; i < off; i++) lead.push(i + (gb ? 1 : 0));
  let r = lead.length > 0 ? reduce("sum", g, lead, false) : g;
  // now r has target's rank; sum axes where the target has size 1 and r does not
  const rs = r.shape;
  const ones: number[] = [];
  target.forEach((d, i) => {
    const rd = rs[i]!;
    if (d !== BATCH && dimConstant(d) === 1 && dimConstant(rd) !== 1) ones.push(i);
  });
  if (ones.length > 0) r = reduce("sum", r, ones, true);
  return r;
}

function reshapeTo(x: Expr, shape: SymShape): Expr {
  if (x.shape.length === shape.length && x.shape.every((d, i) => d === shape[i])) return x;
  return make({ op: "reshape", x: x.node, target: shape });
}

function broadcastTo(x: Expr, shape: SymShape): Expr {
  return make({ op: "broadcast", x: x.node, target: shape });
}

function zeros(shape: SymShape): Expr {
  return broadcastTo(constant(0), shape);
}

/** d/dx f(x) as graph, from x and y = f(x). */
const DERIVATIVE: Record<ScalarFnName, ((x: Expr, y: Expr) => Expr) | null> = {
  neg: () => constant(-1), // d/dx (−x) = −1
  exp: (_x, y) => y, // d/dx eˣ = eˣ
  log: (x) => div(1, x), // d/dx log x = 1/x
  sqrt: (_x, y) => div(0.5, y), // d/dx √x = 1/(2√x)
  rsqrt: (_x, y) => mul(-0.5, mul(y, square(y))), // d/dx x^(−1/2) = −½ x^(−3/2)
  recip: (_x, y) => neg(square(y)), // d/dx 1/x = −1/x²
  square: (x) => mul(2, x), // d/dx x² = 2x
  tanh: (_x, y) => sub(1, square(y)), // d/dx tanh x = 1 − tanh² x
  sigmoid: (_x, y) => mul(y, sub(1, y)), // σ' = σ(1 − σ)
  erf: (x) => mul(2 / Math.sqrt(Math.PI), exp(neg(square(x)))), // erf' = (2/√π) e^(−x²)
  sin: (x) => cos(x),
  cos: (x) => neg(sin(x)),
  abs: (x) => sub(unary("step", x), unary("step", neg(x))), // sign(x), 0 at 0
  relu: (x) => unary("step", x), // 𝟙[x > 0]
  step: null,
  floor: null,
  gelu: (x) => unary("gelu_grad", x),
  // GELU''(x) = φ(x)(2 − x²), φ(x) = e^(−x²/2)/√(2π)
  gelu_grad: (x) =>
    mul(mul(1 / Math.sqrt(2 * Math.PI), exp(mul(-0.5, square(x)))), sub(2, square(x))),
  gelu_tanh: (x) => unary("gelu_tanh_grad", x),
  // f'' = (1 − t²)(u' + ½x(u'' − 2t u'²)), t = tanh u, u = c(x + a x³), u' = c(1 + 3a x²), u'' = 6 a c x
  gelu_tanh_grad: (x) => {
    const c = Math.sqrt(2 / Math.PI);
    const a = 0.044715;
    const t = tanh(mul(c, add(x, mul(a, mul(x, square(x))))));
    const u1 = mul(c, add(1, mul(3 * a, square(x))));
    const u2 = mul(6 * a * c, x);
    return mul(sub(1, square(t)), add(u1, mul(mul(0.5, x), sub(u2, mul(mul(2, t), square(u1))))));
  },
  silu: (x) => unary("silu_grad", x),
  // SiLU'' = σ(1 − σ)(2 + x(1 − 2σ))
  silu_grad: (x) => {
    const s = unary("sigmoid", x);
    return mul(mul(s, sub(1, s)), add(2, mul(x, sub(1, mul(2, s)))));
  },
};

/** The derivative graph of a scalar function (null where it is zero almost everywhere). */
export function scalarDerivative(fn: ScalarFnName, x: Expr, y: Expr): Expr | null {
  const d = DERIVATIVE[fn];
  return d === null ? null : d(x, y);
}

/**
 * Operands whose cotangents a node's rule produces: the node's operands, except that stop-gradient
 * has none, integer indices and where's condition get none, and a call with a custom VJP
 * differentiates to its arguments instead of its body.
 */
export function gradOperands(n: Node): readonly Node[] {
  switch (n.op) {
    case "stopgrad":
      return [];
    case "gather":
      return [n.table];
    case "scatter_add":
      return [n.updates];
    case "where":
      return [n.a, n.b];
    case "call":
      return getFormula(n.formula).vjp !== undefined ? Object.values(n.args) : [n.body];
    default:
      return operands(n);
  }
}

function invertPerm(p: readonly number[]): number[] {
  const inv = new Array<number>(p.length);
  p.forEach((v, i) => (inv[v] = i));
  return inv;
}

/** Insert size-1 axes where `reduce` removed them, so g broadcasts against the input. */
function expandReduced(g: Expr, n: NodeOf<"reduce">): Expr {
  if (n.keepdims) return g;
  const xs = n.x.shape;
  const axes = new Set(n.axes);
  // leading reduced axes (and the batch prefix) come back by right-aligned broadcasting
  let k = 0;
  while (axes.has(k)) k++;
  const shape: Dim[] = [];
  xs.forEach((d, i) => {
    if (i < k) return;
    shape.push(axes.has(i) ? 1 : d);
  });
  return reshapeTo(g, shape);
}

/** Product of all but the last axis, the batch prefix counting as the dim "...". */
function leadingProduct(s: SymShape): Dim {
  let p: Dim = 1;
  for (const d of s.slice(0, -1)) p = mulDim(p, d);
  return p === BATCH ? BATCH_ROWS : p;
}

/** A replacement rule (tests plant wrong rules through it); undefined falls back to the table. */
export type VjpOverride = (n: Node, g: Expr) => (Expr | undefined)[] | undefined;
let override: VjpOverride | undefined;

/**
 * Run `f` with `o` consulted before the rule table (for planting bugs in tests). When `f`
 * returns a promise the override stays in place until it settles.
 */
export function withVjpOverride<T>(o: VjpOverride, f: () => T): T {
  const prev = override;
  override = o;
  let result: T;
  try {
    result = f();
  } catch (e) {
    override = prev;
    throw e;
  }
  if (result instanceof Promise) {
    return result.finally(() => {
      override = prev;
    }) as T;
  }
  override = prev;
  return result;
}

/**
 * The rule table. `g` is the cotangent of the node's output, `y` the node itself (its value).
 * Returns cotangents for `gradOperands(node)`, in order.
 */
export function vjpRule(n: Node, g: Expr): (Expr | undefined)[] {
  if (override !== undefined) {
    const r = override(n, g);
    if (r !== undefined) return r;
  }
  const y = E(n);
  return (
    match<Node, (Expr | undefined)[]>(n)
      .with(
        { op: "input" },
        { op: "const" },
        { op: "dim" },
        { op: "iota" },
        { op: "stopgrad" },
        () => [],
      )
      // x̄ = ȳ · f'(x)
      .with({ op: "unary" }, (n) => {
        if (n.fn === "neg") return [neg(g)];
        const d = scalarDerivative(n.fn, E(n.x), y);
        return [d === null ? undefined : mul(g, d)];
      })
      .with({ op: "binary" }, (n) => {
        const a = E(n.a),
          b = E(n.b);
        const ua = (e: Expr) => unbroadcast(e, n.a.shape);
        const ub = (e: Expr) => unbroadcast(e, n.b.shape);
        return (
          match(n.fn)
            .with("add", () => [ua(g), ub(g)]) // ā = ȳ, b̄ = ȳ
            .with("sub", () => [ua(g), ub(neg(g))]) // ā = ȳ, b̄ = −ȳ
            .with("mul", () => [ua(mul(g, b)), ub(mul(g, a))]) // ā = ȳ b, b̄ = ȳ a
            .with("div", () => [ua(div(g, b)), ub(neg(mul(g, div(y, b))))]) // ā = ȳ/b, b̄ = −ȳ a/b² = −ȳ y/b
            // ā = ȳ b a^(b−1), b̄ = ȳ y log a
            .with("pow", () => [ua(mul(g, mul(b, div(y, a)))), ub(mul(g, mul(y, unary("log", a))))])
            .with("max", () => {
              const tie = mul(0.5, eq(a, b)); // ties split the gradient evenly
              return [ua(mul(g, add(lt(b, a), tie))), ub(mul(g, add(lt(a, b), tie)))];
            })
            .with("min", () => {
              const tie = mul(0.5, eq(a, b));
              return [ua(mul(g, add(lt(a, b), tie))), ub(mul(g, add(lt(b, a), tie)))];
            })
            .with("eq", "lt", "le", () => [undefined, undefined])
            .exhaustive()
        );
      })
      .with({ op: "reduce" }, (n) => {
        const x = E(n.x);
        const ge = expandReduced(g, n);
        if (n.fn === "sum") return [broadcastTo(ge, n.x.shape)]; // x̄ = ȳ broadcast
        // max: the gradient goes to the maxima, split evenly among ties
        const mask = eq(x, expandReduced(y, n));
        const count = expandReduced(reduce("sum", mask, n.axes, n.keepdims), n);
        return [mul(mask, div(ge, count))];
      })
      .with({ op: "reshape" }, (n) => [reshapeTo(g, n.x.shape)])
      .with({ op: "permute" }, (n) => [
        make({ op: "permute", x: g.node, perm: invertPerm(n.perm) }),
      ])
      .with({ op: "broadcast" }, (n) => [unbroadcast(g, n.x.shape)])
      // x̄ = [0 … 0, ȳ, 0 … 0] along the sliced axis
      .with({ op: "slice" }, (n) => {
        const xs = n.x.shape;
        const size = n.shape[n.axis]!;
        const before = n.start;
        const after = subDim(xs[n.axis]!, addDim(n.start, size));
        const part = (d: Dim) => {
          const s = [...xs];
          s[n.axis] = d;
          return zeros(s);
        };
        const parts: Expr[] = [];
        if (dimConstant(before) !== 0) parts.push(part(before));
        parts.push(g);
        if (dimConstant(after) !== 0) parts.push(part(after));
        return [parts.length === 1 ? g : concat(parts, n.axis)];
      })
      .with({ op: "concat" }, (n) => {
        let at: Dim = 0;
        return n.xs.map((x) => {
          const d = x.shape[n.axis]!;
          const s = slice(g, n.axis, at, d);
          at = addDim(at, d);
          return s;
        });
      })
      .with({ op: "matmul" }, (n) => {
        const a = E(n.a),
          b = E(n.b);
        // ā = ȳ bᵀ
        const ga = unbroadcast(matmul(g, transpose(b)), n.a.shape);
        // b̄ = aᵀ ȳ; a weight shared over batch rows folds those rows into one product
        let gb: Expr;
        if (
          explicitDims(n.b.shape).length === 2 &&
          !hasBatch(n.b.shape) &&
          (n.a.shape.length > 2 || hasBatch(n.a.shape))
        ) {
          const N = leadingProduct(n.a.shape);
          const aFlat = reshapeTo(a, [N, n.a.shape[n.a.shape.length - 1]!]);
          const gFlat = reshapeTo(g, [N, n.shape[n.shape.length - 1]!]);
          gb = matmul(transpose(aFlat), gFlat);
        } else gb = unbroadcast(matmul(transpose(a), g), n.b.shape);
        return [ga, gb];
      })
      .with({ op: "gather" }, (n) => [
        make({ op: "scatter_add", updates: g.node, indices: n.indices, target: n.table.shape }),
      ]) // Ē = Σ ȳ rows into E's rows
      .with({ op: "scatter_add" }, (n) => [
        gather(g as Expr<readonly [string, ...string[]]>, E(n.indices)),
      ])
      .with({ op: "where" }, (n) => [
        unbroadcast(where(E(n.cond), g, 0), n.a.shape),
        unbroadcast(where(E(n.cond), 0, g), n.b.shape),
      ])
      .with({ op: "call" }, (n) => {
        const def = getFormula(n.formula);
        if (def.vjp === undefined) return [g];
        const args: Record<string, Expr> = {};
        for (const [k, v] of Object.entries(n.args)) args[k] = E(v);
        const grads = def.vjp({ args, out: y, cot: g, config: n.config });
        return Object.keys(n.args).map((k) => {
          const gk = grads[k];
          return gk === undefined ? undefined : unbroadcast(gk, n.args[k]!.shape);
        });
      })
      .exhaustive()
  );
}

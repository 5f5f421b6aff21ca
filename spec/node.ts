/**
 * The expression graph as plain data: a closed set of primitive ops over symbolically shaped
 * tensors, plus `call` — a transparent marker that a subgraph is the application of a registry
 * formula (so renderers print `softmax(…)`, fused kernels can replace the body, and verifiers can
 * localise errors by formula).
 *
 * Every pass (shape rule, kernel, VJP, render, JSON) dispatches exhaustively over `Node["op"]`:
 * with ts-pattern's `.exhaustive()`, or, in the two passes run once per node of every graph built
 * (the shape rule and the planner's step choice), with a `switch` whose `default` assigns the node
 * to `never` — the same compile-time guarantee without a matcher's allocations per node. A new
 * op cannot be half-supported.
 */
import type { Dim, SymShape } from "./dims.js";
import type { ScalarFnName } from "./scalar.js";

export type ElemType = "float" | "int";
export type BinaryFn = "add" | "sub" | "mul" | "div" | "pow" | "max" | "min" | "eq" | "lt" | "le";
export type ReduceFn = "sum" | "max";
export type ArgRole = "input" | "param";
export type HyperValue = number | string | boolean;
export type Config = Readonly<Record<string, HyperValue>>;

/** An equality between dims that could not be decided symbolically; checked when sizes are bound. */
export interface Constraint {
  readonly a: Dim;
  readonly b: Dim;
  /** Where it comes from, e.g. `matmul inner dims in formula attention`. */
  readonly why: string;
}

/** Display name of a node in rendered formulas (`\mu`, `σ²`). */
export interface Label {
  readonly latex: string;
  readonly text: string;
}

interface Base {
  readonly id: number;
  readonly shape: SymShape;
  readonly dtype: ElemType;
  readonly constraints?: readonly Constraint[];
  readonly label?: Label;
  /** The formula being built when this node was made (for messages). */
  readonly scope?: string;
  /**
   * Render this node as another (e.g. the max-subtracted, zero-safe denominator of softmax is
   * displayed as the plain sum). Presentation only: values and gradients use the node itself.
   */
  readonly display?: Node;
}

export type Node =
  | (Base & { readonly op: "input"; readonly name: string; readonly role: ArgRole })
  /** A scalar constant (shape []), broadcast by the ops that use it. */
  | (Base & { readonly op: "const"; readonly value: number })
  /** A scalar holding a bound dim's size (`d_k` in `1/√d_k`). */
  | (Base & { readonly op: "dim"; readonly dim: Dim })
  /** Index along `axis`, broadcast over the rest of `shape` (positions, masks). */
  | (Base & { readonly op: "iota"; readonly axis: number })
  | (Base & { readonly op: "unary"; readonly fn: ScalarFnName; readonly x: Node })
  | (Base & { readonly op: "binary"; readonly fn: BinaryFn; readonly a: Node; readonly b: Node })
  /** Reduce over symbolic axes (index 0 may be the batch prefix). */
  | (Base & {
      readonly op: "reduce";
      readonly fn: ReduceFn;
      readonly x: Node;
      readonly axes: readonly number[];
      readonly keepdims: boolean;
    })
  | (Base & { readonly op: "reshape"; readonly x: Node })
  | (Base & { readonly op: "permute"; readonly x: Node; readonly perm: readonly number[] })
  | (Base & { readonly op: "broadcast"; readonly x: Node })
  /** Elements `start … start + shape[axis] − 1` along `axis`. */
  | (Base & { readonly op: "slice"; readonly x: Node; readonly axis: number; readonly start: Dim })
  | (Base & { readonly op: "concat"; readonly xs: readonly Node[]; readonly axis: number })
  /** Batched matrix product over the last two axes, batch axes broadcast. */
  | (Base & { readonly op: "matmul"; readonly a: Node; readonly b: Node })
  /** Rows of `table` picked by integer `indices`: shape = indices.shape ++ table.shape[1:]. */
  | (Base & { readonly op: "gather"; readonly table: Node; readonly indices: Node })
  /** The transpose of gather: rows of `updates` summed into a zero table of this node's shape. */
  | (Base & { readonly op: "scatter_add"; readonly updates: Node; readonly indices: Node })
  | (Base & { readonly op: "where"; readonly cond: Node; readonly a: Node; readonly b: Node })
  /** Identity in value, zero in derivative. */
  | (Base & { readonly op: "stopgrad"; readonly x: Node })
  /** The application of registry formula `formula` to `args`; its value is `body`'s. */
  | (Base & {
      readonly op: "call";
      readonly formula: string;
      readonly config: Config;
      readonly args: Readonly<Record<string, Node>>;
      readonly output: string;
      readonly body: Node;
      /** Display the call with this function symbol (φ for the FFN's activation). */
      readonly symbol?: Label;
    });

export type Op = Node["op"];
export type NodeOf<K extends Op> = Extract<Node, { op: K }>;

/** The fields of a node type that hold one operand each. */
type OperandField<N> = Exclude<
  { [F in keyof N]: N[F] extends Node ? F : never }[keyof N],
  undefined
>;

/**
 * Where each op keeps its operands, in their fixed order: the fields holding one operand each.
 * concat keeps its operands as the list `xs`; a call's operand is its body (its arguments are the
 * body's leaves).
 */
const OPERAND_FIELDS: {
  readonly [K in Exclude<Op, "concat">]: readonly OperandField<NodeOf<K>>[];
} = {
  input: [],
  const: [],
  dim: [],
  iota: [],
  unary: ["x"],
  reduce: ["x"],
  reshape: ["x"],
  permute: ["x"],
  broadcast: ["x"],
  slice: ["x"],
  stopgrad: ["x"],
  binary: ["a", "b"],
  matmul: ["a", "b"],
  gather: ["table", "indices"],
  scatter_add: ["updates", "indices"],
  where: ["cond", "a", "b"],
  call: ["body"],
};

/** A node's fields by name, for the operand fields {@link OPERAND_FIELDS} names. */
const fieldsOf = (n: Node) => n as unknown as Readonly<Record<string, Node>>;

/** Direct operands of a node, in a fixed order. */
export function operands(n: Node): readonly Node[] {
  if (n.op === "concat") return n.xs;
  const fields = fieldsOf(n);
  return OPERAND_FIELDS[n.op].map((f) => fields[f]!);
}

/**
 * The node with each operand replaced by `m(operand)` (a call's arguments and body alike), keeping
 * its id, label and shape; the node itself when `m` changes none. The rewriting counterpart of
 * {@link operands}: graph rewrites (planted mistakes, diagnosis hypotheses) map a graph with it.
 */
export function mapOperands(n: Node, m: (x: Node) => Node): Node {
  if (n.op === "concat") return n.xs.every((x) => m(x) === x) ? n : { ...n, xs: n.xs.map(m) };
  if (n.op === "call") {
    const args: Record<string, Node> = {};
    let changed = m(n.body) !== n.body;
    for (const [k, v] of Object.entries(n.args)) {
      args[k] = m(v);
      if (args[k] !== v) changed = true;
    }
    return changed ? { ...n, args, body: m(n.body) } : n;
  }
  const fields = fieldsOf(n);
  let out: Record<string, Node> | undefined;
  for (const f of OPERAND_FIELDS[n.op]) {
    const x = m(fields[f]!);
    if (x !== fields[f]) (out ??= { ...fields })[f] = x;
  }
  return out === undefined ? n : (out as unknown as Node);
}

/**
 * Post-order (children before parents) of the nodes reachable from `roots` through `children`;
 * iterative, since graphs of deep models (L blocks × hundreds of nodes) overflow recursion.
 */
export function postOrder(roots: readonly Node[], children: (n: Node) => readonly Node[]): Node[] {
  const seen = new Set<Node>();
  const order: Node[] = [];
  for (const r of roots) {
    if (seen.has(r)) continue;
    seen.add(r);
    const stack: [Node, number, readonly Node[]][] = [[r, 0, children(r)]];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top[1] < top[2].length) {
        const c = top[2][top[1]++]!;
        if (!seen.has(c)) {
          seen.add(c);
          stack.push([c, 0, children(c)]);
        }
      } else {
        stack.pop();
        order.push(top[0]);
      }
    }
  }
  return order;
}

/** Every node reachable from the roots, operands before users (post-order, deterministic). */
export function topoSort(roots: readonly Node[]): Node[] {
  return postOrder(roots, operands);
}

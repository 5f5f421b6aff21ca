/**
 * Planting: a formula's graph with some of its formula applications (`call` nodes) replaced by
 * other expressions, wherever they occur in the call tree. Diagnosis evaluates named mistakes
 * this way (verify/diagnose.ts), and tests build implementations that carry a mistake
 * consistently through every formula containing it (verify/testing.ts).
 */
import { Expr } from "../spec/expr.js";
import type { Node, NodeOf } from "../spec/node.js";
import { topoSort } from "../spec/node.js";
import type { Graph } from "../autodiff/graph.js";

export type CallNode = NodeOf<"call">;

/**
 * A planted mistake: for an application of a formula (with its arguments already rewritten), the
 * expression that replaces it, or undefined to keep it. `original` is the node of the unplanted
 * graph, for plants that pick particular applications (a site of a trace).
 */
export type Plant = (call: CallNode, original: CallNode) => Expr | undefined;

/** Rebuild a node with new operands (same id, label and shape). */
function withOperands(n: Node, m: (x: Node) => Node): Node {
  switch (n.op) {
    case "input":
    case "const":
    case "dim":
    case "iota":
      return n;
    case "unary":
    case "reduce":
    case "reshape":
    case "permute":
    case "broadcast":
    case "slice":
    case "stopgrad":
      return m(n.x) === n.x ? n : { ...n, x: m(n.x) };
    case "binary":
    case "matmul":
      return m(n.a) === n.a && m(n.b) === n.b ? n : { ...n, a: m(n.a), b: m(n.b) };
    case "concat":
      return n.xs.every((x) => m(x) === x) ? n : { ...n, xs: n.xs.map(m) };
    case "gather":
      return m(n.table) === n.table && m(n.indices) === n.indices ? n : { ...n, table: m(n.table), indices: m(n.indices) };
    case "scatter_add":
      return m(n.updates) === n.updates && m(n.indices) === n.indices ? n : { ...n, updates: m(n.updates), indices: m(n.indices) };
    case "where":
      return m(n.cond) === n.cond && m(n.a) === n.a && m(n.b) === n.b ? n : { ...n, cond: m(n.cond), a: m(n.a), b: m(n.b) };
    case "call": {
      const args: Record<string, Node> = {};
      let changed = m(n.body) !== n.body;
      for (const [k, v] of Object.entries(n.args)) {
        args[k] = m(v);
        if (args[k] !== v) changed = true;
      }
      return changed ? { ...n, args, body: m(n.body) } : n;
    }
  }
}

function argNodes(n: Node): readonly Node[] {
  return n.op === "call" ? Object.values(n.args) : [];
}

/** The graph with every call the plant answers replaced (its arguments rewritten first). */
export function plantInGraph(g: Graph, plant: Plant): Graph {
  const roots = Object.values(g.outputs).map((e) => e.node);
  // call arguments are reached through the body, but list them too so they are mapped first
  const order = topoSort([...roots, ...roots.flatMap(argNodes)]);
  const memo = new Map<Node, Node>();
  const m = (x: Node): Node => memo.get(x) ?? x;
  for (const n of order) {
    let out = withOperands(n, m);
    if (out.op === "call") {
      const replaced = plant(out, n as CallNode);
      if (replaced !== undefined) out = replaced.node;
    }
    memo.set(n, out);
  }
  const outputs: Record<string, Expr> = {};
  for (const [k, e] of Object.entries(g.outputs)) outputs[k] = new Expr(m(e.node));
  return { ...g, name: `${g.name} (planted)`, outputs };
}


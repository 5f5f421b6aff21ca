/**
 * Planting: a formula's graph with some of its formula applications (`call` nodes) replaced by
 * other expressions, wherever they occur in the call tree. Diagnosis evaluates named mistakes
 * this way (verify/diagnose.ts), and tests build implementations that carry a mistake
 * consistently through every formula containing it (verify/testing.ts).
 */
import { Expr } from "../spec/expr.js";
import type { Node, NodeOf } from "../spec/node.js";
import { mapOperands, topoSort } from "../spec/node.js";
import type { Graph } from "../autodiff/graph.js";

export type CallNode = NodeOf<"call">;

/**
 * A planted mistake: for an application of a formula (with its arguments already rewritten), the
 * expression that replaces it, or undefined to keep it. `original` is the node of the unplanted
 * graph, for plants that pick particular applications (a site of a trace).
 */
export type Plant = (call: CallNode, original: CallNode) => Expr | undefined;

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
    let out = mapOperands(n, m);
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


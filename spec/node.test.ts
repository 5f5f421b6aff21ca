/** operands() and its rewriting counterpart mapOperands(): every op, the identity keeps the node. */
import { describe, expect, test } from "vitest";
import "./index.js";
import { buildFormula, exampleConfig, formulaNames } from "./formula.js";
import { mapOperands, operands, topoSort, type Node } from "./node.js";

function allNodes(): Node[] {
  const roots: Node[] = [];
  for (const f of formulaNames()) {
    const built = buildFormula(f, exampleConfig(f, {}));
    for (const e of Object.values(built.outputs)) roots.push(e.node);
  }
  return topoSort(roots);
}

describe("mapOperands", () => {
  const nodes = allNodes();
  // broadcast, scatter_add and stopgrad appear in gradient graphs (autodiff/), not in the forward ones
  test("the registry's forward graphs hold every other op", () => {
    const ops = new Set(nodes.map((n) => n.op));
    for (const op of [
      "input",
      "const",
      "dim",
      "iota",
      "unary",
      "binary",
      "reduce",
      "reshape",
      "permute",
      "slice",
      "concat",
      "matmul",
      "gather",
      "where",
      "call",
    ]) {
      expect(ops.has(op as Node["op"]), op).toBe(true);
    }
  });
  test("the identity map returns the node itself, for every node of every formula", () => {
    for (const n of nodes) expect(mapOperands(n, (x) => x)).toBe(n);
  });
  test("a map that replaces operands rebuilds the node with them, same id and shape, and operands() sees them", () => {
    for (const n of nodes) {
      const ops = operands(n);
      if (ops.length === 0) continue;
      const copies = new Map<Node, Node>(ops.map((x) => [x, { ...x }]));
      const m = mapOperands(n, (x) => copies.get(x) ?? x);
      expect(m).not.toBe(n);
      expect([m.id, m.op, m.shape]).toEqual([n.id, n.op, n.shape]);
      expect(operands(m)).toEqual(ops.map((x) => copies.get(x)));
      for (const x of operands(m)) expect(ops.includes(x)).toBe(false);
    }
  });
});

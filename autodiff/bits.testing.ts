/**
 * Test support: comparing two evaluations of one graph (plain and optimised, plain and fused) bit
 * for bit.
 */
import type { NamedTensors } from "./tensor.js";

/**
 * The first way `got` differs from `want`, for a test to fail with: other names, another shape,
 * or an element of other bits (Object.is: NaN equals NaN, and −0 differs from +0), the element
 * named as `what: name[index] is <got> <gotIs>, <want> plain`; undefined when they are the same.
 */
export function bitDifference(
  want: NamedTensors,
  got: NamedTensors,
  what: string,
  gotIs: string,
): string | undefined {
  const names = (ts: NamedTensors) => Object.keys(ts).sort().join(", ");
  if (names(got) !== names(want)) return `${what}: tensors ${names(got)}, expected ${names(want)}`;
  for (const [k, t] of Object.entries(want)) {
    const u = got[k]!;
    if (u.shape.join(", ") !== t.shape.join(", "))
      return `${what} ${k}: shape [${u.shape.join(", ")}], expected [${t.shape.join(", ")}]`;
    for (let i = 0; i < t.size; i++) {
      if (!Object.is(t.data[i], u.data[i])) {
        const at = `${k}[${t.unravel(i).join(", ")}]`;
        return `${what}: ${at} is ${u.data[i]} ${gotIs}, ${t.data[i]} plain`;
      }
    }
  }
  return undefined;
}

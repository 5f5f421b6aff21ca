import { describe, expect, it } from "vitest";
import { childCounts, markGroups, parseXml } from "./xml.js";

describe("parseXml", () => {
  it("reads a small SVG: root, nesting, attributes, entities, comments", () => {
    const { root, elements } = parseXml(
      `<?xml version="1.0"?>
<!-- a plot -->
<svg xmlns="http://www.w3.org/2000/svg" width="10"><g class="mark-line ` +
        `role-mark"><path d="M0,0L1,1"/><text>a &amp; b &#955;</text></g></svg>
`,
    );
    expect(root.name).toBe("svg");
    expect(root.attrs["width"]).toBe("10");
    expect(elements.map((e) => e.name)).toEqual(["svg", "g", "path", "text"]);
    expect(elements[2]!.path).toEqual(["svg", "g"]);
    expect(elements.map((e) => e.parent)).toEqual([-1, 0, 1, 1]);
  });
  it("finds vega's mark groups of a type and counts their children", () => {
    const { elements } = parseXml(
      `<svg><g class="mark-line role-mark"><path/></g>` +
        `<g class="mark-rule role-mark"><line/><line/></g>` +
        `<g class="mark-rule role-axis-tick"><line/></g><g class="mark-rules role-mark"/></svg>`,
    );
    const rules = markGroups(elements, "rule");
    expect(rules).toHaveLength(1);
    expect(childCounts(elements, rules)).toEqual([2]);
    expect(childCounts(elements, markGroups(elements, "line"))).toEqual([1]);
    expect(markGroups(elements, "symbol")).toEqual([]);
  });
  it.each([
    ["<svg><g></svg>", "closing tag </svg> does not match <g> at line 1, column 9"],
    ["<svg><g>", "<g> is never closed"],
    ["<svg></svg><svg/>", "a second root element <svg>"],
    ['<svg a="1" a="2"/>', "attribute a appears twice on <svg>"],
    ["<svg a=1/>", "attribute a of <svg> is not quoted"],
    ['<svg a="1"b="2"/>', "attributes of <svg> must be separated by whitespace"],
    ["<svg>a & b</svg>", '"&" does not start an entity reference at line 1, column 8'],
    ['<svg a="x<y"/>', '"<" in the value of attribute a'],
    ["text<svg/>", "text outside the root element"],
    ["<svg>\n</g></svg>", "closing tag </g> does not match <svg> at line 2, column 1"],
    ["<!-- a -- b --><svg/>", '"--" inside a comment'],
    ["", "no root element"],
    ["<svg", "unterminated tag <svg"],
  ])("rejects %j: %s", (text, message) => {
    expect(() => parseXml(text)).toThrow(message);
  });
});

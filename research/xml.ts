/**
 * A strict reader of the XML the plots are (no DTDs): it checks well-formedness — one root element,
 * tags properly nested and closed, attributes quoted and unique, entities defined — and returns the
 * elements with their attributes, so tests can ask what an SVG contains.
 */

class XmlError extends Error {
  override name = "XmlError";
}

export interface XmlElement {
  readonly name: string;
  readonly attrs: Readonly<Record<string, string>>;
  /** Names of the enclosing elements, outermost first. */
  readonly path: readonly string[];
  /** Index of the enclosing element in `elements` (−1 for the root). */
  readonly parent: number;
}

const NAME = /[A-Za-z_:][\w:.-]*/y;
const ENTITY = /&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);/y;

/**
 * Parse `text` as XML.
 * @throws XmlError with the line and column of the first violation.
 */
export function parseXml(text: string): { root: XmlElement; elements: XmlElement[] } {
  let i = 0;
  const where = (at: number) => {
    const before = text.slice(0, at);
    const line = before.split("\n").length;
    return `line ${line}, column ${at - before.lastIndexOf("\n")}`;
  };
  const fail = (msg: string, at = i): never => {
    throw new XmlError(`${msg} at ${where(at)}`);
  };
  const checkEntities = (s: string, at: number) => {
    for (let k = s.indexOf("&"); k >= 0; k = s.indexOf("&", k + 1)) {
      ENTITY.lastIndex = k;
      if (!ENTITY.test(s)) fail(`"&" does not start an entity reference`, at + k);
    }
  };
  const readName = (): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(text);
    if (m === null) return fail("expected a name");
    i += m[0].length;
    return m[0];
  };
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const stack: string[] = [];
  const openIdx: number[] = [];
  const elements: XmlElement[] = [];
  let root: XmlElement | undefined;
  let rootClosed = false;
  while (i < text.length) {
    const lt = text.indexOf("<", i);
    const chunk = lt < 0 ? text.slice(i) : text.slice(i, lt);
    if (chunk.includes("]]>")) fail(`"]]>" in text`, i + chunk.indexOf("]]>"));
    if (stack.length === 0 && chunk.trim() !== "") fail("text outside the root element");
    checkEntities(chunk, i);
    if (lt < 0) break;
    i = lt;
    if (text.startsWith("<!--", i)) {
      const end = text.indexOf("-->", i + 4);
      if (end < 0) fail("unterminated comment");
      if (text.slice(i + 4, end).includes("--")) fail(`"--" inside a comment`);
      i = end + 3;
    } else if (text.startsWith("<?", i)) {
      const end = text.indexOf("?>", i + 2);
      if (end < 0) fail("unterminated processing instruction");
      if (text.slice(i + 2, i + 5).toLowerCase() === "xml" && i !== 0)
        fail("XML declaration not at the start");
      i = end + 2;
    } else if (text.startsWith("<![CDATA[", i)) {
      if (stack.length === 0) fail("CDATA outside the root element");
      const end = text.indexOf("]]>", i + 9);
      if (end < 0) fail("unterminated CDATA section");
      i = end + 3;
    } else if (text.startsWith("<!", i)) {
      fail("DOCTYPE and other declarations are not expected");
    } else if (text.startsWith("</", i)) {
      const at = i;
      i += 2;
      const name = readName();
      skipSpace();
      if (text[i] !== ">") fail(`expected ">" to close </${name}`);
      i++;
      const open = stack.pop();
      openIdx.pop();
      if (open === undefined) fail(`closing tag </${name}> without an open element`, at);
      if (open !== name) fail(`closing tag </${name}> does not match <${open}>`, at);
      if (stack.length === 0) rootClosed = true;
    } else {
      const at = i;
      i++;
      const name = readName();
      if (stack.length === 0 && (root !== undefined || rootClosed))
        fail(`a second root element <${name}>`, at);
      const attrs: Record<string, string> = {};
      for (;;) {
        const hadSpace = /\s/.test(text[i] ?? "");
        skipSpace();
        if (text.startsWith("/>", i) || text[i] === ">") break;
        if (i >= text.length) fail(`unterminated tag <${name}`, at);
        if (!hadSpace) fail(`attributes of <${name}> must be separated by whitespace`);
        const attrAt = i;
        const an = readName();
        skipSpace();
        if (text[i] !== "=") fail(`attribute ${an} of <${name}> has no "="`);
        i++;
        skipSpace();
        const q = text[i];
        if (q !== '"' && q !== "'") fail(`attribute ${an} of <${name}> is not quoted`);
        const end = text.indexOf(q!, i + 1);
        if (end < 0) fail(`attribute ${an} of <${name}> is never closed`);
        const value = text.slice(i + 1, end);
        if (value.includes("<"))
          fail(`"<" in the value of attribute ${an}`, i + 1 + value.indexOf("<"));
        checkEntities(value, i + 1);
        if (an in attrs) fail(`attribute ${an} appears twice on <${name}>`, attrAt);
        attrs[an] = value;
        i = end + 1;
      }
      const el: XmlElement = {
        name,
        attrs,
        path: [...stack],
        parent: openIdx[openIdx.length - 1] ?? -1,
      };
      elements.push(el);
      if (stack.length === 0) root = el;
      if (text.startsWith("/>", i)) {
        i += 2;
        if (stack.length === 0) rootClosed = true;
      } else {
        i++;
        stack.push(name);
        openIdx.push(elements.length - 1);
      }
    }
  }
  if (stack.length > 0) fail(`<${stack[stack.length - 1]}> is never closed`);
  if (root === undefined) fail("no root element");
  return { root: root!, elements };
}

/**
 * The groups vega drew for the marks of one type (`"line"`, `"rule"`, `"symbol"`, `"rect"`, …):
 * the elements whose classes include `mark-TYPE` and `role-mark`. A line mark has one group per
 * series; the other marks one group with an element per datum.
 */
export function markGroups(elements: readonly XmlElement[], type: string): XmlElement[] {
  return elements.filter((e) => {
    const classes = (e.attrs["class"] ?? "").split(" ");
    return classes.includes(`mark-${type}`) && classes.includes("role-mark");
  });
}

/** How many child elements each of `groups` has among `elements` (a mark group: its datums). */
export function childCounts(
  elements: readonly XmlElement[],
  groups: readonly XmlElement[],
): number[] {
  return groups.map((g) => {
    const i = elements.indexOf(g);
    return elements.filter((e) => e.parent === i).length;
  });
}

/**
 * The studies, by the name `specformer research STUDY` takes.
 *
 * ```ts
 * import { getStudy } from "./research/index.js";
 * import { writeReport } from "./research/study.js";
 * const report = await getStudy("rank-collapse").run({ quick: true });
 * writeReport("/tmp/rank-collapse", report); // rank-collapse.csv, rank-collapse.svg, summary.md
 * ```
 */
import { editDistance } from "../spec/formula.js";
import { lengthExtrapolationStudy } from "./length-extrapolation.js";
import { lnPlacementStudy } from "./ln-placement.js";
import { mupStudy } from "./mup.js";
import { rankCollapseStudy } from "./rank-collapse.js";
import { StudyError, type Study } from "./study.js";
import { variantsStudy } from "./variants.js";

export const STUDIES: Readonly<Record<string, Study>> = {
  "ln-placement": lnPlacementStudy,
  "length-extrapolation": lengthExtrapolationStudy,
  "rank-collapse": rankCollapseStudy,
  variants: variantsStudy,
  mup: mupStudy,
};

/**
 * A study by name.
 * @throws StudyError naming the unknown study, the closest names and every study.
 */
export function getStudy(name: string): Study {
  // own keys only: "constructor" or "__proto__" is no study
  if (Object.hasOwn(STUDIES, name)) return STUDIES[name]!;
  const names = Object.keys(STUDIES);
  const close = names.filter(
    (k) => editDistance(k, name) <= 3 || k.includes(name) || (name.length > 0 && name.includes(k)),
  );
  throw new StudyError(
    `unknown study "${name}"${close.length > 0 ? ` (did you mean ${close.join(", ")}?)` : ""}; ` +
      `studies: ${names.join(", ")}`,
  );
}

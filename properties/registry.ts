/**
 * The registry of laws, in the order reports list them.
 */
import { LawUsageError, type Law, type LawCase } from "./law.js";
import {
  alibiForms,
  causality,
  groupedQuery,
  headsPermutation,
  maskedZero,
  mhaDecomposition,
  permutationEquivariance,
  positionsBreakEquivariance,
  prefixConsistency,
  ropeRelative,
  uniformKeys,
} from "./laws/attention.js";
import {
  affineOptions,
  causalAlignment,
  groupedHeads,
  ignoredTargets,
  lossConventions,
  maskPadding,
  matmulBroadcast,
  softcapLimit,
  softmaxAxis,
  windowLimit,
} from "./laws/conventions.js";
import {
  activationLimits,
  activationOddPart,
  exactLookups,
  headsLayout,
  sinusoidalRotation,
} from "./laws/elementwise.js";
import {
  batchIndependence,
  determinism,
  referenceErrorBound,
  shapeAlgebra,
} from "./laws/generic.js";
import { kvCache, tiedEmbedding, zeroBranches } from "./laws/model.js";
import { normGradient, normInvariance, normMoments } from "./laws/norms.js";
import { dropoutScaling, ropeFraction, ropePositionIds } from "./laws/rope-dropout.js";
import { crossEntropy, softmaxGradient, softmaxShift, softmaxSimplex } from "./laws/softmax.js";

/** Every law. The reference-oracle law comes last: the others never consult the reference. */
export const LAWS: readonly Law<LawCase>[] = [
  causality,
  prefixConsistency,
  kvCache,
  softmaxSimplex,
  softmaxShift,
  softmaxGradient,
  maskedZero,
  normMoments,
  normInvariance,
  normGradient,
  permutationEquivariance,
  positionsBreakEquivariance,
  headsPermutation,
  mhaDecomposition,
  headsLayout,
  ropeRelative,
  ropeFraction,
  ropePositionIds,
  sinusoidalRotation,
  alibiForms,
  groupedQuery,
  causalAlignment,
  maskPadding,
  windowLimit,
  softcapLimit,
  groupedHeads,
  ignoredTargets,
  softmaxAxis,
  lossConventions,
  affineOptions,
  matmulBroadcast,
  dropoutScaling,
  batchIndependence,
  tiedEmbedding,
  crossEntropy,
  activationOddPart,
  activationLimits,
  zeroBranches,
  uniformKeys,
  exactLookups,
  shapeAlgebra,
  determinism,
  referenceErrorBound,
] as readonly Law<LawCase>[];

/** Law names in registry order. */
export function lawNames(): string[] {
  return LAWS.map((l) => l.name);
}

/** A law by name; an unknown name gets an error listing the known ones (and close matches). */
export function getLaw(name: string): Law<LawCase> {
  const law = LAWS.find((l) => l.name === name);
  if (law !== undefined) return law;
  const close = LAWS.filter((l) => l.name.includes(name) || name.includes(l.name)).map(
    (l) => l.name,
  );
  throw new LawUsageError(
    `unknown law "${name}"${close.length > 0 ? ` (did you mean ${close.join(", ")}?)` : ""}; ` +
      `laws: ${lawNames().join(", ")}`,
  );
}

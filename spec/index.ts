/**
 * spec/: the GPT transformer declared once, as typed data.
 *
 * Importing this module registers every formula of the registry.
 */
export * from "./dims.js";
export * from "./types.js";
export * from "./node.js";
export * from "./scalar.js";
export * from "./shape.js";
export * from "./expr.js";
export * from "./formula.js";
export * from "./bind.js";
export * from "./rewrite.js";
import "./formulas/core.js";
import "./formulas/model.js";
export { blockParams, gptParams, NORMS, PLACEMENTS, BLOCK_ACTIVATIONS, MODEL_POSITIONS, ATTN_POSITIONS } from "./formulas/model.js";
export { PRESETS, presetNames, getPreset } from "./presets.js";
export * as typed from "./typed.js";

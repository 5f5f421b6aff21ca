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

/**
 * How gpt names the parameters of its L blocks: block l's are the block's own names after `h.{l}.`
 * (a GPT-2 checkpoint's). Declared once, here, for the model (spec/formulas/model.ts) and for
 * whatever reads its parameters back per block (the parameter count of spec/render.ts).
 */
export const LAYERS = { count: "L", prefix: (l: number): string => `h.${l}.` } as const;

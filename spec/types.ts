/**
 * Type-level shape algebra. Shapes are tuples of dim-name string literals
 * (`["n", "d_model"]`); `"1"` broadcasts; `"..."` is the batch prefix; a wide `string` is a dim
 * the type system does not track (it is still checked at run time).
 */

export type Dims = readonly string[];

/** A type that reports a shape error in the compiler's message when an argument does not fit. */
export interface ShapeMismatch<Msg extends string, A = unknown, B = unknown> {
  readonly __shapeError: Msg;
  readonly __left: A;
  readonly __right: B;
}

type IsLiteral<S extends string> = string extends S ? false : true;

/** One dim of a broadcast: equal dims, `"1"` against anything, untracked dims pass. */
export type BroadcastDim<X extends string, Y extends string> =
  IsLiteral<X> extends false
    ? Y
    : IsLiteral<Y> extends false
      ? X
      : [X] extends [Y]
        ? [Y] extends [X]
          ? X
          : never
        : X extends "1"
          ? Y
          : Y extends "1"
            ? X
            : never;

/** A tuple without `readonly` (shapes are compared as plain tuples). */
export type Mutable<T extends Dims> = [...T];

/** True for a shape whose rank the type system does not know (`string[]`). */
export type IsWide<S extends Dims> = number extends S["length"] ? true : false;

/** NumPy broadcasting, right-aligned; `never` when some pair of dims cannot broadcast. */
export type Broadcast<A extends Dims, B extends Dims> =
  IsWide<A> extends true
    ? Dims
    : IsWide<B> extends true
      ? Dims
      : [BroadcastTuples<A, B>] extends [never]
        ? never
        : Mutable<BroadcastTuples<A, B>>;

type BroadcastTuples<A extends Dims, B extends Dims> = A extends readonly [
  ...infer AR extends Dims,
  infer AL extends string,
]
  ? B extends readonly [...infer BR extends Dims, infer BL extends string]
    ? [BroadcastDim<AL, BL>] extends [never]
      ? never
      : [BroadcastTuples<AR, BR>] extends [never]
        ? never
        : [...BroadcastTuples<AR, BR>, BroadcastDim<AL, BL>]
    : A
  : B;

/** Intersected with a parameter type: `unknown` when A and B broadcast, a readable error otherwise. */
export type CheckBroadcast<A extends Dims, B extends Dims> = [Broadcast<A, B>] extends [never]
  ? ShapeMismatch<"shapes do not broadcast", A, B>
  : unknown;

/** Remove the last axis. */
export type DropLast<S extends Dims> = S extends readonly [...infer R extends Dims, string]
  ? R
  : Dims;
/** Replace the last axis with "1". */
export type KeepLast<S extends Dims> = S extends readonly [...infer R extends Dims, string]
  ? [...R, "1"]
  : Dims;
/** The last axis. */
export type Last<S extends Dims> = S extends readonly [...Dims, infer L extends string]
  ? L
  : string;

/** Permute a shape by an index tuple. */
export type Permute<S extends Dims, P extends readonly number[]> = {
  -readonly [K in keyof P]: P[K] extends number
    ? S[P[K]] extends string
      ? S[P[K]]
      : string
    : never;
};

/** Swap the last two axes. */
export type SwapLast<S extends Dims> = S extends readonly [
  ...infer B extends Dims,
  infer I extends string,
  infer J extends string,
]
  ? [...B, J, I]
  : Dims;

/** `unknown` when either shape is untracked (wide), an error otherwise: guards fallback overloads. */
export type WideOnly<A extends Dims, B extends Dims> =
  IsWide<A> extends true
    ? unknown
    : IsWide<B> extends true
      ? unknown
      : ShapeMismatch<"shapes are tracked but do not fit", A, B>;

/** `unknown` when two batch prefixes are the same dims, an error otherwise. */
export type SameBatch<A extends Dims, B extends Dims> = [A] extends [B]
  ? [B] extends [A]
    ? unknown
    : ShapeMismatch<"batch axes differ", A, B>
  : ShapeMismatch<"batch axes differ", A, B>;

/** `--config`, the one configuration option of every command that takes a configuration. */
import { findPreset, unknownPresetMessage } from "../spec/presets.js";
import { parseAssignments, UsageError } from "./io.js";

/** A configuration as `--config` gives it: a preset's values (if one was named), then the k=v overrides. */
export interface ConfigFlag {
  /** The preset named, if any. */
  readonly preset?: string;
  /** The preset's hyperparameters, if one was named. */
  readonly presetValues: Record<string, number | string | boolean>;
  /** The name=value pairs given. */
  readonly overrides: Record<string, number | string | boolean>;
}

/**
 * `--config` has one meaning in every command: a comma-separated list of at most one preset name
 * and any number of name=value pairs, the pairs overriding the preset — `--config gpt2-small`,
 * `--config d_model=8,H=2`, `--config tiny,L=1`.
 */
export function configFlag(v: string | undefined, flag = "--config"): ConfigFlag {
  if (v === undefined) return { presetValues: {}, overrides: {} };
  const parts = v
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (parts.length === 0)
    throw new UsageError(
      `${flag} needs a preset name or name=value pairs, e.g. ${flag} gpt2-small or ${flag} d_model=8,H=2`,
    );
  const names = parts.filter((p) => !p.includes("="));
  if (names.length > 1)
    throw new UsageError(`${flag}: at most one preset, got ${names.join(", ")}`);
  const preset = names[0];
  let presetValues: Record<string, number | string | boolean> = {};
  if (preset !== undefined) {
    const found = findPreset(preset);
    if (found === undefined) throw new UsageError(`${flag}: ${unknownPresetMessage(preset)}`);
    presetValues = { ...found };
  }
  const overrides = parseAssignments(parts.filter((p) => p.includes("=")).join(","), flag);
  return { ...(preset !== undefined ? { preset } : {}), presetValues, overrides };
}

/**
 * The error of golden cases and their manifest. The io layer names its own errors for what it
 * reads (a safetensors file, JSON text, a file on disk); a golden case is all three, so what io/
 * raises while reading one becomes a {@link GoldenFormatError} with the same source, tensor and
 * problem, and callers of golden/ catch one type.
 */
import { FileAccessError } from "../io/files.js";
import { JsonFormatError } from "../io/json.js";
import { SafetensorsFormatError } from "../io/safetensors.js";

/** The error raised for every problem with a golden case, its contents or the manifest. */
export class GoldenFormatError extends Error {
  override name = "GoldenFormatError";
  /** The file (or other source label) the problem was found in. */
  readonly source: string;
  /** The tensor the problem concerns, when there is one. */
  readonly tensor: string | undefined;
  /** The problem itself, without the source and tensor prefix. */
  readonly problem: string;
  constructor(source: string, problem: string, tensor?: string) {
    const about = tensor === undefined ? "" : `tensor ${JSON.stringify(tensor)}: `;
    super(`${source}: ${about}${problem}`);
    this.source = source;
    this.tensor = tensor;
    this.problem = problem;
  }
}

/** Run `read`, turning the io layer's errors into a {@link GoldenFormatError} saying the same. */
export function readingGolden<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof SafetensorsFormatError) {
      throw new GoldenFormatError(err.source, err.problem, err.tensor);
    }
    if (err instanceof JsonFormatError) throw new GoldenFormatError(err.source, err.problem);
    if (err instanceof FileAccessError) throw new GoldenFormatError(err.path, err.problem);
    throw err;
  }
}

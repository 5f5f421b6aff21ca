/**
 * Verifying a GPT-2-small-shaped implementation end to end through the process protocol: the
 * `gpt` formula at full size (d_model 768, 12 layers, 12 heads, V 50257, 64 tokens) in float32,
 * forward and backward, answered by examples/numpy/impl.py over binary frames. The weights
 * (~500 MB) go with the forward request and are kept by the program (docs/PROTOCOL.md, "Kept
 * tensors"), so the backward request references them; its answer brings ~500 MB of gradients.
 * Reports the wall time and the transport's share of it (`ProcessImplementation.
 * lastTiming`: encoding, writing until the program has read the request, receiving and decoding
 * the answer), and (in bench/run.ts) checks the loss and every gradient against PyTorch's float64 result.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Tensor, type NamedTensors } from "../autodiff/tensor.js";
import { ProcessImplementation, type RequestTiming } from "../verify/process.js";
import { PYTHON } from "./transport.js";
import {
  gptConfig,
  gptTensors,
  gradsNamed,
  makeTensors,
  summarizeAll,
  type GptSize,
  type Summary,
} from "./workloads.js";

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface GptProcessResult {
  readonly transport: "binary" | "json";
  /** The program kept the weights of the forward request, so the backward one referenced them. */
  readonly kept: boolean;
  readonly forward: RequestTiming & { readonly wallMs: number };
  readonly backward: RequestTiming & { readonly wallMs: number };
  readonly wallMs: number;
  readonly transportMs: number;
  readonly transportShare: number;
  readonly summaries: Record<string, Summary>;
  readonly loss: number;
}

const transportOf = (t: RequestTiming): number => t.encodeMs + t.writeMs + t.readMs + t.decodeMs;

/** One forward and one backward pass of the `gpt` formula through the NumPy example. */
export async function gptThroughProcess(
  size: GptSize,
  log: (l: string) => void,
): Promise<GptProcessResult> {
  const inputs: NamedTensors = makeTensors(gptTensors(size), "f32");
  const config = gptConfig(size);
  const impl = await ProcessImplementation.start(`${PYTHON} examples/numpy/impl.py`, {
    timeoutMs: 1_800_000,
    cwd: ROOT,
  });
  try {
    /** One request, timed: its answer and its timing with the wall time, logged. */
    const timed = async <A>(what: "forward" | "backward", request: () => Promise<A>) => {
      const t0 = performance.now();
      const answer = await request();
      const wallMs = performance.now() - t0;
      const timing = { ...impl.lastTiming!, wallMs };
      log(
        `gpt through numpy (${impl.transport}): ${what} ${wallMs.toFixed(0)} ` +
          `ms, transport ${transportOf(timing).toFixed(0)} ms, ` +
          `${(timing.requestBytes / 2 ** 20).toFixed(0)} MiB sent, ` +
          `${(timing.answerBytes / 2 ** 20).toFixed(0)} MiB back`,
      );
      return { answer, timing };
    };
    const {
      answer: { outputs },
      timing: forward,
    } = await timed("forward", () => impl.forward({ formula: "gpt", config, inputs }));
    const {
      answer: { grads },
      timing: backward,
    } = await timed("backward", () =>
      impl.backwardPass({
        formula: "gpt",
        config,
        inputs,
        cotangents: { loss: Tensor.scalar(1, "f32") },
      }),
    );
    const summaries = summarizeAll({ loss: outputs["loss"]!, ...gradsNamed(grads) });
    const wallMs = forward.wallMs + backward.wallMs;
    const transportMs = transportOf(forward) + transportOf(backward);
    return {
      transport: impl.transport,
      kept: impl.hello.keep,
      forward,
      backward,
      wallMs,
      transportMs,
      transportShare: transportMs / wallMs,
      summaries,
      loss: Number(outputs["loss"]!.data[0]),
    };
  } finally {
    await impl.close();
  }
}

"""PyTorch peer of the benchmark (bench/run.ts): the same workloads in plain torch ops with
autograd, on the same seeded values (bench/seeded.ts, mirrored here bit for bit).

Protocol: one JSON job per line on stdin, one JSON result per line on stdout. Jobs:
  {"kind": "info"}
  {"kind": "hash", "name", "seed", "size", "halfWidth", "center"}   (cross-language check)
  {"kind": "matmul", "size", "dtype", "variant": "AB" | "ABt" | "AtB", "warmup", "reps"}
  {"kind": "block", "size": {d_model, n, H, d_ff}, "dtype", "inputs": [spec], "cot": spec, ...}
  {"kind": "gpt", "size": {V, n_ctx, d_model, H, L, d_ff, tokens}, "dtype", "tensors": [spec], ...}
Results carry per-tensor summaries (norm, projection on a seeded probe) and times in ms.
"""
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

U32 = np.uint32


def name_key(name, seed):
    h = 0x811C9DC5
    for byte in name.encode("utf-8"):
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return (h ^ ((seed * 0x9E3779B9) & 0xFFFFFFFF)) & 0xFFFFFFFF


def hash_u(name, seed, size):
    """u_i in (0, 1): lowbias32((i * 0x9E3779B1 + key) mod 2^32), as bench/seeded.ts."""
    with np.errstate(over="ignore"):
        x = np.arange(size, dtype=U32) * U32(0x9E3779B1) + U32(name_key(name, seed))
        x ^= x >> U32(16)
        x *= U32(0x7FEB352D)
        x ^= x >> U32(15)
        x *= U32(0x846CA68B)
        x ^= x >> U32(16)
    return (x.astype(np.float64) + 0.5) / 4294967296.0


def make(spec, seed, dtype):
    size = int(np.prod(spec["shape"])) if spec["shape"] else 1
    u = hash_u(spec["name"], seed, size)
    if spec.get("V") is not None:
        return torch.from_numpy(np.floor(u * spec["V"]).astype(np.int64).reshape(spec["shape"]))
    v = spec["center"] + spec["halfWidth"] * (2 * u - 1)
    np_dtype = np.float64 if dtype == "f64" else np.float32
    return torch.from_numpy(v.astype(np_dtype).reshape(spec["shape"]))


def summarize(name, t, seed):
    a = t.detach().to(torch.float64).reshape(-1).numpy()
    r = 2 * hash_u("probe:" + name, seed, a.size) - 1
    return {"norm": float(math.sqrt(float(np.dot(a, a)))), "proj": float(np.dot(r, a)), "probeRms": float(math.sqrt(float(np.dot(r, r)) / a.size)) if a.size else 0.0}


def timed(f, warmup, reps):
    for _ in range(warmup):
        f()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def blas_info():
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "blas" in p.lower() or "lapack" in p.lower():
                    libs.add(os.path.realpath(p))
    except OSError:
        pass
    config = None
    for lib in sorted(libs):
        try:
            import ctypes

            so = ctypes.CDLL(lib)
            if hasattr(so, "openblas_get_config"):
                so.openblas_get_config.restype = ctypes.c_char_p
                config = so.openblas_get_config().decode()
                break
        except OSError:
            continue
    return {"libraries": sorted(libs), "openblas_config": config}


def dt(dtype):
    return torch.float64 if dtype == "f64" else torch.float32


# ---------------------------------------------------------------------------------------------
# the workloads in torch ops


def block(x, p, H, eps):
    """GPT-2's pre-LN block: x + attn(LN1 x), then + mlp(LN2 ·); causal, GELU (tanh)."""
    n, d = x.shape
    dk = d // H
    h = F.layer_norm(x, (d,), p["ln_1.weight"], p["ln_1.bias"], eps)
    qkv = h @ p["attn.c_attn.weight"] + p["attn.c_attn.bias"]
    q, k, v = qkv.split(d, dim=-1)
    q = q.reshape(n, H, dk).transpose(0, 1)  # (H, n, dk)
    k = k.reshape(n, H, dk).transpose(0, 1)
    v = v.reshape(n, H, dk).transpose(0, 1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(dk)
    mask = torch.ones(n, n, dtype=torch.bool).tril()
    s = s.masked_fill(~mask, float("-inf"))
    a = torch.softmax(s, dim=-1) @ v  # (H, n, dk)
    a = a.transpose(0, 1).reshape(n, d)
    x1 = x + (a @ p["attn.c_proj.weight"] + p["attn.c_proj.bias"])
    h2 = F.layer_norm(x1, (d,), p["ln_2.weight"], p["ln_2.bias"], eps)
    f = F.gelu(h2 @ p["mlp.c_fc.weight"] + p["mlp.c_fc.bias"], approximate="tanh")
    return x1 + (f @ p["mlp.c_proj.weight"] + p["mlp.c_proj.bias"])


def gpt_loss(tokens, targets, p, size, eps):
    n = tokens.shape[0]
    x = p["wte.weight"][tokens] + p["wpe.weight"][:n]
    for l in range(size["L"]):
        pre = f"h.{l}."
        x = block(x, {k[len(pre):]: v for k, v in p.items() if k.startswith(pre)}, size["H"], eps)
    x = F.layer_norm(x, (size["d_model"],), p["ln_f.weight"], p["ln_f.bias"], eps)
    logits = x @ p["wte.weight"].t()
    return F.cross_entropy(logits, targets)


# ---------------------------------------------------------------------------------------------


def job(j):
    kind = j["kind"]
    seed = j.get("seed", 0)
    if kind == "info":
        torch.set_num_threads(j.get("threads", os.cpu_count() or 1))
        return {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0], "threads": torch.get_num_threads(), "blas": blas_info(), "config": torch.__config__.show()}
    if kind == "hash":
        return {"values": [float(v) for v in (j["center"] + j["halfWidth"] * (2 * hash_u(j["name"], seed, j["size"]) - 1))]}
    if kind == "matmul":
        m = j["size"]
        a = make({"name": "A", "shape": [m, m], "halfWidth": 1, "center": 0}, seed, j["dtype"])
        b = make({"name": "B", "shape": [m, m], "halfWidth": 1, "center": 0}, seed, j["dtype"])
        var = j["variant"]
        f = {"AB": lambda: a @ b, "ABt": lambda: a @ b.t(), "AtB": lambda: a.t() @ b}[var]
        with torch.no_grad():
            c = f()
            times = timed(f, j["warmup"], j["reps"])
        return {"timesMs": times, "summaries": {"C": summarize("C", c, seed)}}
    if kind == "block":
        s = j["size"]
        ts = {sp["name"]: make(sp, seed, j["dtype"]).requires_grad_(True) for sp in j["inputs"]}
        cot = make(j["cot"], seed, j["dtype"])
        names = list(ts.keys())
        params = {k: v for k, v in ts.items() if k != "x"}

        def run():
            y = block(ts["x"], params, s["H"], j["eps"])
            gs = torch.autograd.grad(y, [ts[k] for k in names], cot)
            return y, gs

        y, gs = run()
        sums = {"y": summarize("y", y, seed)}
        for k, g in zip(names, gs):
            sums["grad." + k] = summarize("grad." + k, g, seed)
        times = timed(run, j["warmup"], j["reps"])
        with torch.no_grad():
            fwd = timed(lambda: block(ts["x"], params, s["H"], j["eps"]), j["warmup"], j["reps"])
        return {"timesMs": times, "forwardMs": fwd, "summaries": sums}
    if kind == "gpt":
        s = j["size"]
        t0 = time.perf_counter()
        ts = {}
        for sp in j["tensors"]:
            v = make(sp, seed, j["dtype"])
            ts[sp["name"]] = v if sp.get("V") is not None else v.requires_grad_(True)
        init_ms = (time.perf_counter() - t0) * 1e3
        params = {k: v for k, v in ts.items() if k not in ("tokens", "targets")}
        names = list(params.keys())

        def run():
            loss = gpt_loss(ts["tokens"], ts["targets"], params, s, j["eps"])
            gs = torch.autograd.grad(loss, [params[k] for k in names])
            return loss, gs

        loss, gs = run()
        sums = {"loss": summarize("loss", loss.reshape(1), seed)}
        for k, g in zip(names, gs):
            sums["grad." + k] = summarize("grad." + k, g, seed)
        del gs
        times = timed(lambda: run(), j["warmup"], j["reps"])
        return {"timesMs": times, "summaries": sums, "initMs": init_ms, "loss": float(loss), "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    raise ValueError(f"unknown job kind {kind!r}")


def main():
    torch.set_num_threads(os.cpu_count() or 1)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            out = job(json.loads(line))
        except Exception as e:  # reported to the driver, which names the job
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Benchmark: naive vs chunked per-token reverse KL + entropy from hidden states (SPEC §5).

Runs every method on the same seeded inputs and prints, side by side: median wall time over
``--repeats`` runs, peak *extra* memory (above the inputs) and the max abs error against the
naive reference.

Memory method
- CPU: each method runs in its own fresh subprocess. After the inputs are built, the process
  resets its resident-set high-water mark (Linux: write "5" to /proc/self/clear_refs) and records
  VmRSS; after one call, peak extra = VmHWM − that VmRSS (/proc/self/status). This sees torch's
  allocations, which tracemalloc does not. Linux only.
- CUDA: torch.cuda.max_memory_allocated() − memory_allocated() before the call, after
  reset_peak_memory_stats().

Examples
    python benchmarks/divergence.py                          # CPU, 1,024 tokens, 151,936 vocab
    python benchmarks/divergence.py --device cuda --tokens 8192 --dtype bfloat16 --chunk-size 1024
    python benchmarks/divergence.py --tokens 64 --hidden 64 --vocab 1000 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from algorithms.divergence import reverse_kl_and_entropy  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_inputs(tokens: int, hidden: int, vocab: int, dtype: torch.dtype, device: str, seed: int):
    """Seeded hidden states with LM-like logit scale (std ≈ 2.5) and a perturbed teacher."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    w = torch.randn(vocab, hidden, generator=g) / hidden**0.5
    hs = torch.randn(tokens, hidden, generator=g) * 2.5
    ht = hs + 0.5 * torch.randn(tokens, hidden, generator=g)
    return (t.to(device=device, dtype=dtype) for t in (hs, ht, w))


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024
    return out


def parse_spec(spec: str, args: argparse.Namespace) -> tuple[str, dict]:
    """``backend[:chunk_size[:vocab_chunk_size]]`` → (label, reverse_kl_and_entropy kwargs)."""
    parts = spec.split(":")
    chunk = int(parts[1]) if len(parts) > 1 and parts[1] else args.chunk_size
    vchunk = int(parts[2]) if len(parts) > 2 and parts[2] else args.vocab_chunk_size
    label = parts[0] if parts[0] == "naive" else f"{parts[0]}[{chunk},{vchunk or 'V'}]"
    return label, dict(backend=parts[0], chunk_size=chunk, vocab_chunk_size=vchunk)


def _caller(args: argparse.Namespace, spec: str, hs, ht, w):
    _, kw = parse_spec(spec, args)
    cuda = args.device.startswith("cuda")

    def call():
        out = reverse_kl_and_entropy(hs, ht, w, **kw)
        if cuda:
            torch.cuda.synchronize()
        return out

    return call


def child_memory(args: argparse.Namespace) -> dict:
    """One method, one call, in a fresh process: peak extra bytes above the inputs; saves outputs."""
    hs, ht, w = make_inputs(args.tokens, args.hidden, args.vocab, DTYPES[args.dtype], args.device, args.seed)
    call = _caller(args, args.methods, hs, ht, w)
    if args.device.startswith("cuda"):
        call()  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        kl, ent = call()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = _status()["VmRSS"]
        kl, ent = call()
        peak = _status()["VmHWM"] - base
    torch.save({"kl": kl.cpu(), "ent": ent.cpu()}, args.out)
    return {"peak_extra_bytes": peak}


def child_timing(args: argparse.Namespace) -> dict:
    """All methods in one process, interleaved round by round (fair under a shared, noisy CPU)."""
    hs, ht, w = make_inputs(args.tokens, args.hidden, args.vocab, DTYPES[args.dtype], args.device, args.seed)
    specs = args.methods.split(",")
    calls = {s: _caller(args, s, hs, ht, w) for s in specs}
    if args.device.startswith("cuda"):
        for c in calls.values():
            c()  # warm-up
    times: dict[str, list[float]] = {s: [] for s in specs}
    for _ in range(args.repeats):
        for s in specs:
            t0 = time.perf_counter()
            calls[s]()
            times[s].append(time.perf_counter() - t0)
    return {"times_s": times}


def _child_cmd(args: argparse.Namespace, mode: str, methods: str, out: str = "") -> list[str]:
    cmd = [sys.executable, __file__, "--_child", mode, "--methods", methods, "--out", out]
    for k in ("tokens", "hidden", "vocab", "dtype", "device", "chunk_size", "repeats", "threads", "seed"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    if args.vocab_chunk_size is not None:
        cmd += ["--vocab-chunk-size", str(args.vocab_chunk_size)]
    return cmd


def _run_child(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=1024, help="N, tokens (rows); GPU anchor: 8192")
    p.add_argument("--hidden", type=int, default=2560, help="H, hidden size (Qwen3-4B: 2560)")
    p.add_argument("--vocab", type=int, default=151_936, help="V, vocabulary size (Qwen3: 151,936)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--chunk-size", type=int, default=128, help="tokens per chunk for the chunked method")
    p.add_argument("--vocab-chunk-size", type=int, default=None, help="vocabulary slice (default: whole vocab)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per method (median reported)")
    p.add_argument(
        "--methods",
        default="naive,chunked:128,chunked:1024:8192",
        help="comma-separated backend[:chunk_size[:vocab_chunk_size]]; the first is the reference",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--_child", choices=["mem", "time"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda requested but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._child:
        fn = child_memory if args._child == "mem" else child_timing
        print(json.dumps(fn(args)))
        return 0

    specs = args.methods.split(",")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(specs):
            out = os.path.join(tmp, f"{i}.pt")
            res = _run_child(_child_cmd(args, "mem", spec, out))
            res["method"] = parse_spec(spec, args)[0]
            res["outputs"] = torch.load(out)
            results.append(res)
        timing = _run_child(_child_cmd(args, "time", args.methods))["times_s"]
    for spec, r in zip(specs, results):
        r["times_s"] = timing[spec]
        r["median_s"] = statistics.median(timing[spec])
    ref = results[0]["outputs"]
    for r in results:
        r["max_abs_err_kl"] = float((r["outputs"]["kl"] - ref["kl"]).abs().max())
        r["max_abs_err_entropy"] = float((r["outputs"]["ent"] - ref["ent"]).abs().max())
        r["mean_kl"] = float(r["outputs"]["kl"].mean())
        del r["outputs"]
    shape = f"N={args.tokens} H={args.hidden} V={args.vocab} {args.dtype} on {args.device}"
    if args.json:
        print(json.dumps({"shape": shape, "threads": torch.get_num_threads(), "results": results}, indent=1))
        return 0
    base = results[0]
    print(f"{shape}, threads={torch.get_num_threads()}, repeats={args.repeats} (interleaved; median)")
    print(f"{'method':<22}{'median s':>10}{'time ratio':>12}{'peak extra':>14}{'mem ratio':>11}{'err KL':>11}{'err H':>11}")
    for r in results:
        print(
            f"{r['method']:<22}{r['median_s']:>10.3f}{r['median_s'] / base['median_s']:>12.3f}"
            f"{r['peak_extra_bytes'] / 2**20:>11.1f} MiB{r['peak_extra_bytes'] / max(base['peak_extra_bytes'], 1):>11.3f}"
            f"{r['max_abs_err_kl']:>11.2e}{r['max_abs_err_entropy']:>11.2e}"
        )
    print(f"(errors vs {base['method']}; time/mem ratios vs {base['method']}; mean KL {base['mean_kl']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

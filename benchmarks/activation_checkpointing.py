"""Memory and time of the training forward + backward with and without activation checkpointing.

The local trainer's policy pass runs the shared prefix once and each episode's suffix on top of
its KV cache (``adapters.local.forward.generated_hidden``). With activation checkpointing
(``--activation-checkpointing``, on in the GPU preset) the decoder layers keep only their inputs
and recompute the rest in the backward pass, still reading the prefix cache. This script runs
the same batch (random token ids, every suffix token counted as generated) both ways, each in a
fresh subprocess, and prints the peak extra memory (CPU: the process's peak RSS above what it
held after loading; CUDA: ``max_memory_allocated`` above the model) and the median time of a
forward + backward, and checks that the gradients agree.

    python benchmarks/activation_checkpointing.py                 # embedded SmolLM2-135M, CPU
    python benchmarks/activation_checkpointing.py --rows 8 --suffix 2048 --device cuda --model PATH
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def measure(args: argparse.Namespace, checkpointing: bool) -> dict:
    from adapters.local.forward import RolloutBatch, enable_activation_checkpointing, generated_hidden
    from adapters.local.model import load_model

    loaded = load_model(args.model, device=args.device)
    model = loaded.model
    if checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    g = torch.Generator().manual_seed(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    prefix = torch.randint(0, vocab, (args.prefix,), generator=g).tolist()
    ids = torch.randint(0, vocab, (args.rows, args.suffix), generator=g).to(args.device)
    batch = RolloutBatch(ids=ids, attn=torch.ones_like(ids), mask=torch.ones_like(ids[:, 1:], dtype=torch.bool))
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(args.repeats):
        model.zero_grad(set_to_none=True)
        started = time.perf_counter()
        hidden = generated_hidden(model, [prefix] * args.rows, batch, grad=True)
        hidden.float().pow(2).mean().backward()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    grad = torch.cat([p.grad.flatten().float().cpu() for p in model.parameters() if p.grad is not None])
    return {"median_s": statistics.median(times), "peak_extra_gib": peak / 2**30,
            "grad_norm": grad.norm().item(), "grad_head": grad[:4096].tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="local HF model folder (default: the embedded SmolLM2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=4, help="episodes sharing the prefix")
    parser.add_argument("--prefix", type=int, default=700, help="shared prefix tokens")
    parser.add_argument("--suffix", type=int, default=1024, help="suffix tokens per episode")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args, args.child == "on")))
        return
    results = {}
    for mode in ("off", "on"):
        cmd = [sys.executable, __file__, "--child", mode, "--device", args.device, "--rows", str(args.rows),
               "--prefix", str(args.prefix), "--suffix", str(args.suffix), "--repeats", str(args.repeats)]
        if args.model:
            cmd += ["--model", args.model]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    off, on = results["off"], results["on"]
    diff = max(abs(a - b) for a, b in zip(off["grad_head"], on["grad_head"]))
    print(f"{args.rows} rows x ({args.prefix} shared prefix + {args.suffix} suffix) tokens, device {args.device}, "
          f"median of {args.repeats} forward + backward")
    print(f"{'activation checkpointing':26} {'time s':>8} {'peak extra GiB':>15}")
    for mode, r in results.items():
        print(f"{mode:26} {r['median_s']:8.2f} {r['peak_extra_gib']:15.2f}")
    print(f"on / off: {on['median_s'] / off['median_s']:.2f}x time, "
          f"{on['peak_extra_gib'] / max(off['peak_extra_gib'], 1e-9):.2f}x peak extra memory; "
          f"gradient norm {off['grad_norm']:.6g} vs {on['grad_norm']:.6g}, max diff of the first 4,096 entries {diff:.2e}")


if __name__ == "__main__":
    main()

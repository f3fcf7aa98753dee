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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._two_way import measure, report, run_variants  # noqa: E402


def child(args: argparse.Namespace, checkpointing: bool) -> dict:
    from adapters.local.forward import RolloutBatch, enable_activation_checkpointing, generated_hidden
    from adapters.local.model import load_model

    model = load_model(args.model, device=args.device).model
    if checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    g = torch.Generator().manual_seed(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    prefix = torch.randint(0, vocab, (args.prefix,), generator=g).tolist()
    ids = torch.randint(0, vocab, (args.rows, args.suffix), generator=g).to(args.device)
    batch = RolloutBatch(ids=ids, attn=torch.ones_like(ids), mask=torch.ones_like(ids[:, 1:], dtype=torch.bool))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        generated_hidden(model, [prefix] * args.rows, batch, grad=True).float().pow(2).mean().backward()

    result = measure(step, repeats=args.repeats, device=args.device)
    grad = torch.cat([p.grad.flatten().float().cpu() for p in model.parameters() if p.grad is not None])
    return {**result, "grad_head": grad[:4096].tolist()}


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
        print(json.dumps(child(args, args.child == "on")))
        return
    common = ["--device", args.device, "--rows", str(args.rows), "--prefix", str(args.prefix),
              "--suffix", str(args.suffix), "--repeats", str(args.repeats)]
    if args.model:
        common += ["--model", args.model]
    results = run_variants(__file__, {mode: ["--child", mode, *common] for mode in ("off", "on")})
    report(f"{args.rows} rows x ({args.prefix} shared prefix + {args.suffix} suffix) tokens, device {args.device}, "
           f"median of {args.repeats} forward + backward after one warm-up", "activation checkpointing", results)


if __name__ == "__main__":
    main()

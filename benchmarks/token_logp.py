"""Memory and time of the policy log-probs through the LM head: one pass vs checkpointed chunks.

``adapters.local.forward.token_logp`` turns the generated tokens' hidden rows into log π(y_t)
``chunk_size`` rows at a time, each chunk checkpointed, so the backward pass recomputes a
chunk's logits instead of keeping all [M × V] of them. This script runs forward + backward of
sum_t c_t · log π(y_t) both ways on the same random inputs, each in a fresh subprocess, and
prints the peak extra memory (CPU: peak RSS above what the process held before; CUDA:
``max_memory_allocated`` above the inputs), the median time and the largest gradient difference.

    python benchmarks/token_logp.py                                  # M 8,192, H 576, V 49,152 (SmolLM2 head)
    python benchmarks/token_logp.py --tokens 32768 --hidden 2560 --vocab 151936 --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._two_way import measure, report, run_variants  # noqa: E402


class _Head(torch.nn.Module):
    """A bare LM head behind the ``get_output_embeddings`` accessor ``token_logp`` uses."""

    def __init__(self, vocab: int, hidden: int, dtype: torch.dtype, device: str) -> None:
        super().__init__()
        self.head = torch.nn.Linear(hidden, vocab, bias=False, dtype=dtype, device=device)

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head


def child(args: argparse.Namespace, chunk_size: int) -> dict:
    from adapters.local.forward import token_logp

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = _Head(args.vocab, args.hidden, dtype, args.device)
    hidden = torch.randn(args.tokens, args.hidden, dtype=dtype, device=args.device, requires_grad=True)
    targets = torch.randint(0, args.vocab, (args.tokens,), device=args.device)
    coef = torch.linspace(-1, 1, args.tokens, device=args.device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        hidden.grad = None
        (token_logp(model, hidden, targets, chunk_size=chunk_size) * coef).sum().backward()

    result = measure(step, repeats=args.repeats, device=args.device)
    return {**result, "grad_head": hidden.grad.float().flatten()[:4096].cpu().tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192, help="M, generated tokens")
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args, args.child)))
        return
    common = ["--tokens", str(args.tokens), "--hidden", str(args.hidden), "--vocab", str(args.vocab),
              "--dtype", args.dtype, "--device", args.device, "--repeats", str(args.repeats)]
    results = run_variants(__file__, {"one pass": ["--child", str(args.tokens), *common],
                                      f"chunks of {args.chunk_size}": ["--child", str(args.chunk_size), *common]})
    report(f"policy log-probs: M {args.tokens} tokens, hidden {args.hidden}, vocab {args.vocab}, {args.dtype}, "
           f"device {args.device}; forward + backward, median of {args.repeats} after one warm-up", "log-probs", results)


if __name__ == "__main__":
    main()

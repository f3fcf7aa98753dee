"""Multi-turn rollout cost with and without the per-episode KV cache kept across turns.

The local rollout engine samples all siblings of a batch in lockstep on top of the shared
system-prompt cache. With ``keep_turn_cache`` (the default) each episode's cache survives from
turn to turn and a turn feeds only the new tokens (the env's reply and the generation prompt);
without it every turn re-feeds each episode's whole conversation so far, a cost that grows with
the square of the turns. Both runs use the same seeds, so they must produce the same episodes;
the script checks that and prints the time of each, alternating the two, best of ``--repeats``.

    python benchmarks/rollout_speed.py                      # embedded SmolLM2-135M, CPU preset sizes
    python benchmarks/rollout_speed.py --turns 6 --max-new-tokens 48
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.local.model import load_model  # noqa: E402
from benchmarks._tau3 import sync, tau3_engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="local HF model folder (default: the embedded SmolLM2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=6)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--prompt", default="compact", choices=["compact", "faithful"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    loaded = load_model(args.model, device=args.device)
    base, task_ids = tau3_engine(loaded.model, loaded.tokenizer, tasks=args.tasks, max_turns=args.turns,
                                 max_new_tokens=args.max_new_tokens, prompt=args.prompt)
    best: dict[bool, float] = {}
    episodes: dict[bool, list] = {}
    for _ in range(args.repeats):
        for keep in (False, True):
            engine = dataclasses.replace(base, keep_turn_cache=keep)
            sync(args.device)
            started = time.perf_counter()
            eps, _ = engine.run(task_ids, args.group_size, seed=0)
            sync(args.device)
            best[keep] = min(best.get(keep, float("inf")), time.perf_counter() - started)
            episodes[keep] = [(ep.suffix_ids, ep.loss_mask) for ep in eps]
            turns = sum(ep.turns for ep in eps)
            tokens = sum(ep.generated_tokens for ep in eps)
    print(f"{args.tasks} tasks x G={args.group_size}, <= {args.turns} turns x {args.max_new_tokens} tokens, "
          f"prefix {len(base.renderer.prefix_ids)} tokens; {turns} agent turns, {tokens} generated tokens; "
          f"best of {args.repeats}, device {args.device}")
    print(f"re-feed the conversation every turn: {best[False]:7.2f} s")
    print(f"keep the cache across turns:        {best[True]:7.2f} s  ({best[True] / best[False]:.2f}x)")
    print(f"same episodes: {'yes' if episodes[True] == episodes[False] else 'NO (numerics changed a sample)'}")


if __name__ == "__main__":
    main()

"""Side-by-side cost of one training step of GRPO+KL, SGCD and SDPO in the local trainer.

All methods update on the SAME rolled-out batch (rolled out once, shared), from the same initial
weights, so the only difference is each method's own work: SGCD adds the teacher forward and the
chunked divergence, SDPO an EMA-teacher forward and the top-k JSD. Reported per method: median
update time, its ratio to GRPO+KL, and the full-step ratio including the shared rollout time
(a real step = rollout + update), after ``--warmup`` untimed updates per method. On CUDA also the
peak memory of the update.

For timing only, sibling rewards are assigned alternately (1, 0, 1, 0, ...) so every group is
mixed, and SGCD's summarizer is a fixed one-line reference (a timing stand-in), so every group
runs the teacher: the measured SGCD cost is its worst case.

    python benchmarks/step_overhead.py                          # CPU, embedded SmolLM2-135M
    python benchmarks/step_overhead.py --device cuda --arch qwen3-0.6b --tokenizer PATH [--activation-checkpointing]
      # GPU check (issue 7): random-initialised Qwen3-0.6B-shaped model in bf16
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from adapters.local.model import load_model, resolve_model  # noqa: E402
from adapters.local.trainer import LocalTrainer, LoopSettings  # noqa: E402
from algorithms.config import DynamicSamplingConfig, GRPOConfig, SDPOConfig, SGCDConfig  # noqa: E402
from algorithms.credit_reference import CreditItem, CreditReference, StepRef  # noqa: E402
from algorithms.divergence import divergence_backends  # noqa: E402
from benchmarks._tau3 import sync, tau3_engine  # noqa: E402

ARCHS = {
    # Qwen3-0.6B's published shape (config.json of Qwen/Qwen3-0.6B), random weights.
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True),
    "qwen3-tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, vocab_size=151936, tie_word_embeddings=True),
}


class FixedReference:
    """TIMING STAND-IN summarizer: the same one-item reference for every group."""

    label = name = "fixed-timing-stand-in"
    calls = failures = cache_hits = 0

    def reference(self, task_prompt, success, failures):
        return CreditReference(items=(CreditItem(1, "decisive", StepRef(0, 1), "The first reply decided it."),),
                               source=self.label)


def build_model(args):
    if args.arch == "embedded":
        loaded = load_model(None, device=args.device)
        return loaded.model, loaded.tokenizer
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or resolve_model(None), local_files_only=True)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    config = Qwen3Config(**ARCHS[args.arch], max_position_embeddings=32768, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Qwen3ForCausalLM(config).to(device=args.device, dtype=dtype), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="embedded", choices=["embedded", *ARCHS])
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder for --arch qwen3-* (default: embedded)")
    parser.add_argument("--tasks", type=int, default=2, help="groups in the batch")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--prompt", default="compact", choices=["compact", "faithful"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed updates per method first (kernel loading and compiling, allocator growth)")
    parser.add_argument("--activation-checkpointing", action="store_true", help="as the GPU preset does")
    args = parser.parse_args()

    model, tokenizer = build_model(args)
    engine, task_ids = tau3_engine(model, tokenizer, tasks=args.tasks, max_turns=args.max_turns,
                                   max_new_tokens=args.max_new_tokens, prompt=args.prompt)
    sync(args.device)
    started = time.perf_counter()
    episodes, stats = engine.run(task_ids, args.group_size, seed=0)
    sync(args.device)
    rollout_s = time.perf_counter() - started
    for i, ep in enumerate(episodes):
        ep.reward = float(i % 2 == 0)  # timing only: every group mixed
    tokens = sum(ep.generated_tokens for ep in episodes)
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}), "
          f"arch {args.arch}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"prefix {len(engine.renderer.prefix_ids)} tokens, batch {len(episodes)} episodes, {tokens} generated tokens, "
          f"{max(len(e.suffix_ids) for e in episodes)} max suffix tokens; rollout {rollout_s:.2f} s; "
          f"activation checkpointing {'on' if args.activation_checkpointing else 'off'}")

    results = {}
    for method in ("grpo", "sgcd", "sdpo"):
        times, peaks = [], []
        for repeat in range(args.warmup + args.repeats):
            trainer = LocalTrainer(copy.deepcopy(model), tokenizer, engine, method=method,
                                   loop=LoopSettings(steps=1, max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                                                     activation_checkpointing=args.activation_checkpointing),
                                   grpo_cfg=GRPOConfig(group_size=args.group_size, lr=1e-6),
                                   sampling_cfg=DynamicSamplingConfig(groups_per_batch=args.tasks),
                                   configs=(SGCDConfig(), SDPOConfig()), summarizer=FixedReference(),
                                   task_pool=task_ids)
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            sync(args.device)
            t0 = time.perf_counter()
            metrics = trainer.update(episodes)
            sync(args.device)
            elapsed = time.perf_counter() - t0
            assert metrics["updated"] == 1.0
            del trainer
            if repeat < args.warmup:
                continue
            times.append(elapsed)
            if args.device.startswith("cuda"):
                peaks.append((torch.cuda.max_memory_allocated() - base) / 2**30)
        results[method] = (statistics.median(times), max(peaks) if peaks else None)

    grpo_update = results["grpo"][0]
    sgcd_backend = "fused" if args.device.startswith("cuda") and "fused" in divergence_backends() else "chunked"
    print(f"median of {args.repeats} updates after {args.warmup} warm-up; SGCD divergence backend (auto): {sgcd_backend}")
    print(f"{'method':8} {'update s':>9} {'vs grpo':>8} {'step vs grpo':>13} {'peak GiB':>9}")
    for method, (update_s, peak) in results.items():
        step_ratio = (rollout_s + update_s) / (rollout_s + grpo_update)
        peak_text = f"{peak:9.2f}" if peak is not None else f"{'-':>9}"
        print(f"{method:8} {update_s:9.3f} {update_s / grpo_update:8.2f} {step_ratio:13.2f} {peak_text}")


if __name__ == "__main__":
    main()

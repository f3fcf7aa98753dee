"""Decode speed of the rollout sampler: the eager path vs the static-cache path (issue #17).

One random-initialised model, one set of prompts (the τ³ system-prompt prefix, computed once,
and each row's opening episode suffix), for each batch size and each path:

    prefill ms   feeding the per-episode suffixes on top of the shared prefix (+ one sample)
    decode ms    per lockstep step (forward + sampling + the host transfer), from
                 (t(1 + steps tokens) − t(1 token)) / steps, greedy, no stop token
    tokens/s     batch / decode step time
    floor ms     parameter bytes / memory bandwidth (the memory-bound floor of one step), and
                 with the KV cache the static step reads (rows × capacity) added

Paths: ``eager`` (extend_and_sample, a DynamicCache), ``static`` (the preallocated cache, step
uncaptured) and, on CUDA, ``static+cuda-graph`` (the step replayed from a CUDA graph). Every path
must give the eager path's greedy tokens (asserted). If prefill dominates a turn once decode is
fast, the "prefill %" column (prefill / (prefill + steps × decode)) shows it.

    python benchmarks/decode_speed.py --device cpu --arch qwen3-tiny             # CPU rehearsal
    python benchmarks/decode_speed.py --device cuda --arch qwen3-0.6b --tokenizer PATH --out decode.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from adapters.local.rollout import BatchCache, extend_and_sample, prefix_cache  # noqa: E402
from adapters.local.static_decode import StaticDecoder, static_extend_and_sample  # noqa: E402
from benchmarks._tau3 import sync, tau3_engine  # noqa: E402
from benchmarks.step_overhead import ARCHS, build_model  # noqa: E402

# Peak memory bandwidth (B/s) by a substring of the CUDA device name, most specific first.
BANDWIDTH = (("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("A100-SXM4-80GB", 2.04e12),
             ("A100", 1.555e12), ("L40S", 0.864e12), ("RTX 4090", 1.008e12), ("A10", 0.6e12), ("L4", 0.3e12))
DEFAULT_BANDWIDTH = 4.8e12  # H200


def bandwidth_for(device_name: str) -> float:
    """The table's bandwidth of ``device_name`` (the H200's when it is not listed)."""
    return next((bw for key, bw in BANDWIDTH if key in device_name), DEFAULT_BANDWIDTH)


def kv_bytes_per_column(model: torch.nn.Module) -> int:
    """Bytes one cache column (one token of one row) holds: layers × 2 × kv heads × head dim × dtype."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    itemsize = next(model.parameters()).element_size()
    return cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim * itemsize


def timed(fn, device: str):
    sync(device)
    started = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--arch", default="qwen3-tiny", choices=sorted(ARCHS))
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the embedded SmolLM2's)")
    parser.add_argument("--batches", default="1,8,32,64", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=32, help="timed decode steps per call")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per path (median)")
    parser.add_argument("--bandwidth", type=float, default=None,
                        help="memory bandwidth in B/s for the floor (default: by GPU name, else 4.8e12 = H200)")
    parser.add_argument("--prompt", default="compact", choices=["compact", "faithful"])
    parser.add_argument("--out", default=None, help="write the results as JSON to this file")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    if args.device == "cpu":
        torch.set_num_threads(1)

    model, tokenizer = build_model(args)
    model.eval()
    engine, task_ids = tau3_engine(model, tokenizer, tasks=4, max_turns=1, max_new_tokens=1, prompt=args.prompt)
    openings = []
    for j, task_id in enumerate(task_ids):
        ep, env = engine._start(task_id, j, seed=j)
        env.close()
        openings.append(ep.suffix_ids)
    prefix = engine.renderer.prefix_ids
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    bandwidth = args.bandwidth or (bandwidth_for(name) if args.device == "cuda" else DEFAULT_BANDWIDTH)
    params = {id(p): p for p in model.parameters()}.values()
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    kv_column = kv_bytes_per_column(model)
    prefix_s, cache = timed(lambda: prefix_cache(model, prefix), args.device)
    prefix_s, cache = timed(lambda: prefix_cache(model, prefix), args.device)  # warm

    decoders = {"static": StaticDecoder(model, capture=False)}
    if args.device == "cuda":
        decoders["static+cuda-graph"] = StaticDecoder(model, capture=True)
    pad = engine.pad_id

    def run(path: str, rows: list[list[int]], new: int):
        if path == "eager":
            state = BatchCache.from_prefix(cache, len(prefix), len(rows))
            return extend_and_sample(model, state, rows, max_new_tokens=new, stop_ids=[-1], pad_id=pad,
                                     temperature=0.0), state
        state = decoders[path].from_prefix(cache, len(prefix), len(rows))
        return static_extend_and_sample(model, state, rows, max_new_tokens=new, stop_ids=[-1], pad_id=pad,
                                        temperature=0.0), state

    print(f"device {args.device} ({name}), arch {args.arch}, {sum(p.numel() for p in params) / 1e6:.1f}M params "
          f"({param_bytes / 1e9:.3f} GB), {next(model.parameters()).dtype}; prefix {len(prefix)} tokens "
          f"(computed once: {prefix_s * 1e3:.1f} ms), suffixes {sorted(len(o) for o in openings)} tokens; "
          f"{args.steps} greedy steps, median of {args.repeats}; bandwidth {bandwidth:.3g} B/s")
    floor_ms = param_bytes / bandwidth * 1e3
    results = []
    header = (f"{'batch':>5} {'path':18} {'prefill ms':>10} {'decode ms':>10} {'tokens/s':>10} {'floor ms':>9} "
              f"{'+kv ms':>8} {'vs eager':>9} {'prefill %':>9}")
    print(header)
    for batch in [int(b) for b in args.batches.split(",")]:
        rows = [openings[i % len(openings)] for i in range(batch)]
        reference = None
        eager_ms = None
        for path in ["eager", *decoders]:
            # warm-up: kernels, the allocator, and the captured path's slot and graph (at the timed capacity)
            run(path, rows, args.steps + 1 if decoders.get(path) and decoders[path].capture else 2)
            run(path, rows, 1)
            prefill, total = [], []
            for _ in range(args.repeats):
                prefill.append(timed(lambda: run(path, rows, 1), args.device)[0])
                t, (tokens, state) = timed(lambda: run(path, rows, args.steps + 1), args.device)
                total.append(t)
            if reference is None:
                reference = tokens
            assert tokens == reference, f"{path} gave other greedy tokens than eager at batch {batch}"
            prefill_ms = statistics.median(prefill) * 1e3
            decode_ms = max(statistics.median(total) * 1e3 - prefill_ms, 0.0) / args.steps
            eager_ms = decode_ms if path == "eager" else eager_ms
            # KV the step reads: the eager cache's rows × columns; the static slot's whole buffer
            kv_read = batch * state.attention.shape[1] if path == "eager" else state.slot.rows * state.slot.capacity
            kv_ms = kv_read * kv_column / bandwidth * 1e3
            share = prefill_ms / (prefill_ms + args.steps * decode_ms)
            row = dict(batch=batch, path=path, prefill_ms=prefill_ms, decode_ms=decode_ms,
                       tokens_per_s=batch / (decode_ms / 1e3) if decode_ms else None, floor_ms=floor_ms,
                       floor_kv_ms=floor_ms + kv_ms, speedup=eager_ms / decode_ms if decode_ms else None,
                       prefill_share=share)
            results.append(row)
            print(f"{batch:5d} {path:18} {prefill_ms:10.2f} {decode_ms:10.3f} {row['tokens_per_s'] or 0:10.0f} "
                  f"{floor_ms:9.3f} {floor_ms + kv_ms:8.3f} {row['speedup'] or 0:8.2f}x {share:9.0%}")
        for decoder in decoders.values():  # free this batch size's slots before the next one
            decoder.slots.clear()
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print("greedy tokens: the same on every path; " + "; ".join(f"{p} ran as {d.name}" for p, d in decoders.items()))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(device=args.device, device_name=name, arch=args.arch, param_bytes=param_bytes,
                    bandwidth=bandwidth, prefix_tokens=len(prefix), prefix_ms=prefix_s * 1e3, steps=args.steps,
                    repeats=args.repeats, decoders={p: d.name for p, d in decoders.items()},
                    torch=torch.__version__)
        out.write_text(json.dumps(dict(meta=meta, results=results), indent=1))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()

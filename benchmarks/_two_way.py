"""Shared by the two-way memory benchmarks (``activation_checkpointing.py``, ``token_logp.py``):
each variant runs in a fresh process, so its peak memory is its own, and the two are printed
side by side with the ratio and the largest difference of their gradients."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch


def _held_bytes(device: str) -> int:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def measure(step: Callable[[], None], *, repeats: int, device: str, warmup: int = 1) -> dict[str, float | list]:
    """Median seconds of ``step()`` over ``repeats`` timed calls after ``warmup`` untimed ones
    (first-call costs: kernel loading, allocator growth, library heuristics), every timed call's
    seconds, and the peak memory above what was held before, warm-up included (CPU: peak RSS of
    this process; CUDA: ``max_memory_allocated``)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _held_bytes(device)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "times_s": times,
            "peak_extra_gib": (_held_bytes(device) - base) / 2**30}


def run_variants(script: str, variants: dict[str, list[str]]) -> dict[str, dict]:
    """Run ``script`` once per variant in a fresh interpreter; each prints one JSON line last."""
    results = {}
    for label, argv in variants.items():
        out = subprocess.run([sys.executable, script, *argv], check=True, capture_output=True, text=True).stdout
        results[label] = json.loads(out.strip().splitlines()[-1])
    return results


def report(title: str, column: str, results: dict[str, dict]) -> None:
    """The table, then the second variant against the first (time, memory, gradient diff)."""
    (first, a), (second, b) = results.items()
    diff = max(abs(x - y) for x, y in zip(a["grad_head"], b["grad_head"]))
    print(title)
    width = max(len(column), *(len(label) for label in results))
    print(f"{column:{width}} {'time s':>8} {'peak extra GiB':>15}  each timed call, s")
    for label, r in results.items():
        each = ", ".join(f"{t:.3f}" for t in r["times_s"])
        print(f"{label:{width}} {r['median_s']:8.3f} {r['peak_extra_gib']:15.2f}  {each}")
    print(f"{second} vs {first}: {b['median_s'] / a['median_s']:.2f}x time, "
          f"{b['peak_extra_gib'] / max(a['peak_extra_gib'], 1e-9):.2f}x peak extra memory; "
          f"max gradient difference (first 4,096 entries) {diff:.1e}")

"""Dynamic sampling: keep groups with mixed rewards, and decide how many more tasks to draw.

SPEC §3 step 2 (same setting for every method). Source: DAPO dynamic sampling (Yu et al. 2025,
arXiv 2503.14476: keep groups whose reward std > 0, over-sample to fill the batch); the SGCD
abstract says dynamic sampling "yields mixed successful/failed sibling rollouts".
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from algorithms import _checks
from algorithms.errors import ShapeError
from algorithms.grpo import group_index

__all__ = ["batch_group_ids", "mixed_groups", "tasks_to_draw"]


def mixed_groups(
    rewards: torch.Tensor, group_ids: torch.Tensor | Sequence
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mask of samples whose group has mixed rewards (not all equal).

    ``keep_i = [max_{j∈G(i)} R_j > min_{j∈G(i)} R_j]`` — equivalently std_G R > 0. Groups of one
    are never mixed. Shapes: rewards (B,), group_ids (B,) → keep (B,) bool.

    Metrics: ``groups_total``, ``groups_kept``, ``groups_dropped``, and the dropped groups split
    into ``groups_dropped_all_zero`` (every R = 0), ``groups_dropped_all_one`` (every R = 1) and
    ``groups_dropped_other``; ``samples_kept``. Source: DAPO dynamic sampling; names ours.
    """
    _checks.ndim("rewards", rewards, 1)
    _checks.finite("rewards", rewards)
    idx, n = group_index(group_ids)
    if idx.shape[0] != rewards.shape[0]:
        raise ShapeError(f"group_ids has {idx.shape[0]} entries but rewards has {rewards.shape[0]}")
    r = rewards.detach().to(torch.float64)
    idx = idx.to(r.device)
    gmax = torch.full((n,), -math.inf, dtype=r.dtype, device=r.device).scatter_reduce(0, idx, r, "amax")
    gmin = torch.full((n,), math.inf, dtype=r.dtype, device=r.device).scatter_reduce(0, idx, r, "amin")
    mixed = gmax > gmin
    keep = mixed[idx]
    dropped = ~mixed
    metrics = {
        "sampling/groups_total": float(n),
        "sampling/groups_kept": float(mixed.sum()),
        "sampling/groups_dropped": float(dropped.sum()),
        "sampling/groups_dropped_all_zero": float((dropped & (gmax == 0)).sum()),
        "sampling/groups_dropped_all_one": float((dropped & (gmin == 1)).sum()),
        "sampling/groups_dropped_other": float((dropped & (gmax != 0) & (gmin != 1)).sum()),
        "sampling/samples_kept": float(keep.sum()),
    }
    return keep, metrics


def tasks_to_draw(
    groups_kept: int,
    groups_needed: int,
    *,
    oversample_factor: float = 1.0,
    rounds_done: int,
    max_rounds: int,
) -> int:
    """How many more tasks to roll out so the batch reaches ``groups_needed`` mixed groups.

    ``n = 0`` if ``groups_kept ≥ groups_needed`` or ``rounds_done ≥ max_rounds`` (resample limit
    hit: train on what was kept and report it), else
    ``n = ceil((groups_needed − groups_kept) · oversample_factor)``.
    ``oversample_factor`` ≥ 1 anticipates that some new groups will be dropped again (e.g. 1/
    the observed keep rate). Source: DAPO's "keep sampling until the batch is full", with a
    round cap (verl ``max_num_gen_batches``); the formula is ours.
    """
    for name, v in (("groups_kept", groups_kept), ("groups_needed", groups_needed),
                    ("rounds_done", rounds_done), ("max_rounds", max_rounds)):
        if int(v) != v or v < 0:
            raise ShapeError(f"{name} must be a non-negative integer, got {v!r}")
    if not (math.isfinite(oversample_factor) and oversample_factor >= 1.0):
        raise ShapeError(f"oversample_factor must be a finite number >= 1, got {oversample_factor!r}")
    if groups_kept >= groups_needed or rounds_done >= max_rounds:
        return 0
    return int(math.ceil((groups_needed - groups_kept) * oversample_factor - 1e-9))


def batch_group_ids(mixed_ids: Sequence[int], *, room: int, offset: int) -> dict[int, int]:
    """New batch ids for one dynamic-sampling round's mixed groups: ``{old id: new id}``.

    The round's mixed groups, in ascending old id, fill the ``room`` free places of the batch:
    ``new(g) = offset + rank(g)`` for ``rank(g) < room`` (rank = position in the sorted distinct
    ids); the rest are not kept. ``offset`` is the number of groups already in the batch, so ids
    stay ``0 .. groups − 1`` over all rounds. Pure: the caller relabels copies of its episodes
    (relabelling them in place while matching on the old ids merges groups whose new id equals
    a later group's old id).
    """
    if int(room) != room or room < 0 or int(offset) != offset or offset < 0:
        raise ShapeError(f"room and offset must be non-negative integers, got room={room!r}, offset={offset!r}")
    ordered = sorted(set(int(g) for g in mixed_ids))[: int(room)]
    return {g: int(offset) + rank for rank, g in enumerate(ordered)}

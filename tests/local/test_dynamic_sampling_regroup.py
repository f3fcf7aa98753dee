"""Dynamic sampling over several rounds keeps exactly the mixed groups' episodes, each once.

The rollout engine here is a stand-in that returns scripted rewards (no model runs), so the test
sees only ``LocalTrainer.collect``'s regrouping; the trainer around it is the real one.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.local.rollout import Episode
from algorithms.config import DynamicSamplingConfig
from algorithms.sampling import batch_group_ids

from tests.local.test_trainer import make_trainer

G = 2


class ScriptedRewardsEngine:
    """STAND-IN rollout engine: in round k, the groups listed in ``mixed_by_round[k]`` get rewards
    (1, 0), every other group (0, 0); one group of G siblings per drawn task, ids 0, 1, ..."""

    def __init__(self, mixed_by_round: list[set[int]]) -> None:
        self.mixed_by_round, self.calls = mixed_by_round, 0

    def run(self, tasks, group_size, seed=0):
        mixed = self.mixed_by_round[self.calls]
        self.calls += 1
        episodes = [Episode(task_id=f"round{self.calls}-group{g}", group=g, reward=float(g in mixed and i == 0))
                    for g in range(len(tasks)) for i in range(G)]
        return episodes, {"rollout_s": 0.0, "generated_tokens": 0}


def collect(tiny_model, tokenizer, mixed_by_round, groups_per_batch, oversample_factor=2.0):
    trainer = make_trainer(tiny_model, tokenizer, "grpo")
    trainer.sampling_cfg = DynamicSamplingConfig(groups_per_batch=groups_per_batch, max_rounds=len(mixed_by_round),
                                                 oversample_factor=oversample_factor)
    trainer.engine = ScriptedRewardsEngine(mixed_by_round)
    kept, _, stats, _ = trainer.collect()
    return kept, stats


def test_second_round_ids_that_equal_later_old_ids_are_not_merged(tiny_model, tokenizer):
    # 6 groups per batch, oversampling 2: round 1 draws 12 tasks and keeps 3 (ids 0-2); round 2
    # draws 6 and brings {0, 3, 5}, which become ids 3, 4, 5. Relabelling in place made old group
    # 0 into id 3 and then matched it again with old group 3: 14 episodes, tasks merged.
    kept, stats = collect(tiny_model, tokenizer, [{0, 1, 2}, {0, 3, 5}], groups_per_batch=6)
    assert stats["groups_kept"] == 6
    assert len(kept) == 6 * G and len({id(ep) for ep in kept}) == len(kept)
    assert Counter(ep.group for ep in kept) == {g: G for g in range(6)}
    assert sorted({(ep.group, ep.task_id) for ep in kept}) == [
        (0, "round1-group0"), (1, "round1-group1"), (2, "round1-group2"),
        (3, "round2-group0"), (4, "round2-group3"), (5, "round2-group5")]


def test_three_rounds_with_three_groups_per_batch(tiny_model, tokenizer):
    # round 1 (3 tasks) keeps old 1 → 0; round 2 (2 tasks) nothing; round 3 (2 tasks): old 0, 1 → 1, 2
    kept, stats = collect(tiny_model, tokenizer, [{1}, set(), {0, 1}], groups_per_batch=3, oversample_factor=1.0)
    assert stats["groups_kept"] == 3 and stats["resample_rounds"] == 3
    assert sorted({(ep.group, ep.task_id) for ep in kept}) == [
        (0, "round1-group1"), (1, "round3-group0"), (2, "round3-group1")]
    assert Counter(ep.group for ep in kept) == {0: G, 1: G, 2: G}


@settings(max_examples=200, deadline=None)
@given(rounds=st.lists(st.lists(st.booleans(), min_size=1, max_size=8), min_size=1, max_size=5),
       groups_per_batch=st.integers(1, 8))
def test_kept_ids_are_dense_and_each_mixed_group_appears_once(rounds, groups_per_batch):
    kept: dict[int, tuple[int, int]] = {}  # new id → (round, old id)
    for k, mixed in enumerate(rounds):
        ids = batch_group_ids([g for g, m in enumerate(mixed) if m], room=groups_per_batch - len(kept),
                              offset=len(kept))
        for old, new in ids.items():
            assert new not in kept
            kept[new] = (k, old)
    assert sorted(kept) == list(range(len(kept)))
    expected = [(k, g) for k, mixed in enumerate(rounds) for g, m in enumerate(mixed) if m][:groups_per_batch]
    assert [kept[i] for i in range(len(kept))] == expected


def test_negative_room_is_refused():
    with pytest.raises(Exception, match="non-negative"):
        batch_group_ids([0], room=-1, offset=0)

"""The static-cache decode path (capture off on the CPU) gives exactly the eager path's tokens."""

from __future__ import annotations

import pytest
import torch

from adapters.local.rollout import BatchCache, RolloutEngine, decode_path, extend_and_sample, prefix_cache
from adapters.local.static_decode import (
    StaticDecoder,
    bucket_capacity,
    bucket_rows,
    static_extend_and_sample,
    static_support,
)
from tests.local.helpers import NO_WRITE_TRAIN, make_engine, tiny_llama

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sharp_model(tokenizer):
    """The tiny Llama with its queries and keys scaled up: at the default init scale attention is
    nearly uniform, so a wrong position or a leaked column would not change a token."""
    model = tiny_llama(len(tokenizer), seed=1)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(12.0)
            layer.self_attn.k_proj.weight.mul_(12.0)
    return model


def _record(episodes):
    return [(ep.task_id, ep.group, ep.suffix_ids, ep.loss_mask, ep.reward, ep.turns) for ep in episodes]


def _engine(model, tokenizer, decoder: str, **kwargs) -> RolloutEngine:
    engine = make_engine(model, tokenizer, **kwargs)
    engine.decoder = decoder
    return engine


def test_buckets():
    assert [bucket_rows(n) for n in (1, 2, 3, 5, 8, 9, 33, 64, 65, 130)] == [1, 2, 4, 8, 8, 16, 64, 64, 128, 192]
    assert [bucket_capacity(c) for c in (1, 256, 257, 1000, 1025)] == [256, 256, 512, 1024, 2048]
    with pytest.raises(ValueError):
        bucket_rows(0)


def test_extend_and_sample_matches_the_eager_function_over_turns(sharp_model, tokenizer):
    """Turn by turn on one batch: the same tokens and ``generated_fed`` as the eager function,
    with rows of different widths, rows stopping early (a stop id the model emits), rows dropped
    and reordered between turns, and a padded row bucket (5 rows → 8)."""
    torch.manual_seed(0)
    prefix = torch.randint(3, 500, (9,)).tolist()
    cache = prefix_cache(sharp_model, prefix)
    eager = BatchCache.from_prefix(cache, len(prefix), 5)
    decoder = StaticDecoder(sharp_model)
    static = decoder.from_prefix(cache, len(prefix), 5)
    new = [torch.randint(3, 500, (k,)).tolist() for k in (4, 1, 7, 3, 5)]
    kwargs = dict(max_new_tokens=6, pad_id=2, temperature=0.0)
    first = extend_and_sample(sharp_model, eager, new, stop_ids=[2], **kwargs)
    stop = [first[0][1], first[3][2]]  # tokens the model emits: rows stop at different steps
    eager = BatchCache.from_prefix(cache, len(prefix), 5)
    turns = []
    for rows in (None, [4, 0, 2, 3], [2, 0]):
        if rows is not None:
            eager, static = eager.select(rows), static.select(rows)
            new = [[7, 8, 9][: 1 + r % 3] for r in rows]
        a = extend_and_sample(sharp_model, eager, new, stop_ids=stop, **kwargs)
        b = static_extend_and_sample(sharp_model, static, new, stop_ids=stop, **kwargs)
        assert a == b and eager.generated_fed == static.generated_fed
        turns.append(a)
    assert len({len(g) for g in turns[0]}) > 1  # rows stopped at different steps
    assert static.columns == int(eager.attention.shape[1])  # the same compacted layout


@pytest.mark.parametrize("temperature", [1.0, [1.0, 0.0, 0.7]])
def test_extend_and_sample_draws_the_same_samples(sharp_model, tokenizer, temperature):
    """Seeded sampling (one temperature, or per row with a greedy rider) draws the same tokens:
    both paths sample the real rows only, from the same logits, with the same generator."""
    prefix = list(range(10, 20))
    cache = prefix_cache(sharp_model, prefix)
    new = [[30, 31, 32], [40], [50, 51]]
    kwargs = dict(max_new_tokens=8, stop_ids=[2], pad_id=2, temperature=temperature)
    a = extend_and_sample(sharp_model, BatchCache.from_prefix(cache, len(prefix), 3), new,
                          generator=torch.Generator().manual_seed(3), **kwargs)
    static = StaticDecoder(sharp_model).from_prefix(cache, len(prefix), 3)
    b = static_extend_and_sample(sharp_model, static, new, generator=torch.Generator().manual_seed(3), **kwargs)
    assert a == b


def test_static_rollouts_are_the_eager_rollouts(sharp_model, tokenizer):
    """Greedy multi-turn rollouts, rows ending at different turns (the coin-flip user), with and
    without the turn cache and one group at a time: the same episodes on both paths."""
    runs = {}
    for decoder in ("eager", "static"):
        for keep, batch_groups in ((True, None), (False, None), (True, 1)):
            engine = _engine(sharp_model, tokenizer, decoder, max_turns=4, temperature=0.0, p_stop=0.4)
            engine.keep_turn_cache, engine.batch_groups = keep, batch_groups
            episodes, _ = engine.run(NO_WRITE_TRAIN[:2], 3, seed=5)
            runs[decoder, keep, batch_groups] = _record(episodes)
        assert engine.decode_path == decoder
    assert len({rec[-1] for rec in runs["eager", True, None]}) > 1  # episodes ended at different turns
    assert len(set(map(repr, runs.values()))) == 1


@pytest.mark.parametrize("batch_groups", [None, 1])
def test_static_rollouts_with_greedy_riders_are_the_eager_ones(sharp_model, tokenizer, batch_groups):
    """Sampled episodes (temperature 1, seeded) with greedy riders, or sampled riders with their
    own generators, in the first batch: the same sampled, greedy and rider episodes on both paths."""
    results = []
    for decoder in ("eager", "static"):
        engine = _engine(sharp_model, tokenizer, decoder, max_turns=3, p_stop=0.4)
        engine.batch_groups = batch_groups
        sampled, greedy, info = engine.run_with_probe(NO_WRITE_TRAIN[:2], 3, NO_WRITE_TRAIN[1:4], seed=5,
                                                      probe_seed=7)
        _, drawn, drawn_info = engine.run_with_probe(NO_WRITE_TRAIN[:2], 3, NO_WRITE_TRAIN[1:3], seed=5,
                                                     probe_seed=7, probe_samples=2)
        results.append((_record(sampled), _record(greedy), info["generated_tokens"], info["probe_tokens"],
                        _record(drawn), drawn_info["probe_tokens"]))
    assert results[0] == results[1]
    assert results[0][3] > 0 and results[0][5] > 0


def test_decoder_choice(sharp_model, tokenizer):
    with pytest.raises(ValueError, match="RolloutEngine.decoder must be one of 'auto', 'eager', 'static'"):
        RolloutEngine(sharp_model, tokenizer, None, lambda: None, decoder="graph")
    assert _engine(sharp_model, tokenizer, "auto").decode_path == "eager"  # CPU: eager
    assert [decode_path(sharp_model, d) for d in ("auto", "eager", "static")] == ["eager", "eager", "static"]
    with pytest.raises(ValueError, match="decoder must be one of"):
        decode_path(sharp_model, "graph")
    assert static_support(sharp_model) is None
    with pytest.raises(ValueError, match="CUDA-graph capture needs"):
        StaticDecoder(sharp_model, capture=True)


def test_a_stale_static_batch_is_refused(sharp_model, tokenizer):
    """A batch whose slot another batch has since loaded raises instead of reading its rows."""
    cache = prefix_cache(sharp_model, [5, 6, 7])
    decoder = StaticDecoder(sharp_model)
    kwargs = dict(max_new_tokens=2, stop_ids=[2], pad_id=2, temperature=0.0)
    first = decoder.from_prefix(cache, 3, 2)
    static_extend_and_sample(sharp_model, first, [[8], [9]], **kwargs)
    static_extend_and_sample(sharp_model, decoder.from_prefix(cache, 3, 2), [[8], [9]], **kwargs)
    with pytest.raises(RuntimeError, match="taken over"):
        static_extend_and_sample(sharp_model, first.select([0, 1]), [[1], [1]], **kwargs)

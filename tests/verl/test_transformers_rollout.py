"""The transformers rollout server answers verl's generate contract with a real tiny model.

Checked against plain transformers forwards on the same model: sampled log-probs, vLLM-style
prompt log-probs in verl's layout, greedy decoding, the token budget and the weight update.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch
from verl_required import verl  # noqa: F401

from adapters.verl import transformers_rollout as tr


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from _rollout_stand_ins import byte_tokenizer

    tok = byte_tokenizer()
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(model_dir):
    config = SimpleNamespace(prompt_length=64, response_length=16, max_model_len=None, seed=3)
    return tr.TransformersServer(config, SimpleNamespace(path=str(model_dir), local_path=str(model_dir)), 0, "cpu")


def generate(server, prompt, **params):
    return asyncio.run(server.generate(prompt_ids=prompt, sampling_params=params, request_id="r"))


def forward_logits(server, ids):
    with torch.no_grad():
        return server.model(input_ids=torch.tensor([ids])).logits[0].float()


def test_greedy_generation_matches_argmax_of_full_forwards_and_logprobs_match(server):
    prompt = [5, 17, 42, 9]
    out = generate(server, prompt, temperature=0, logprobs=True)
    assert 1 <= len(out.token_ids) <= 16 and out.stop_reason == "completed"
    ids = prompt + out.token_ids
    logits = forward_logits(server, ids)
    positions = range(len(prompt) - 1, len(ids) - 1)
    assert out.token_ids == [int(logits[p].argmax()) for p in positions]
    expected = [float(torch.log_softmax(logits[p], -1)[ids[p + 1]]) for p in positions]
    assert out.log_probs == pytest.approx(expected, abs=1e-4)
    assert out.extra_fields["global_steps"] is None


def test_prompt_logprobs_follow_verls_layout(server):
    prompt = [3, 8, 13, 21, 34]
    logits = forward_logits(server, prompt)
    logp = torch.log_softmax(logits, -1)
    k0 = generate(server, prompt, temperature=0, max_tokens=1, prompt_logprobs=0).extra_fields
    assert len(k0["prompt_logprobs"]) == len(prompt) and k0["prompt_ids"][-1] == [0]
    for j in range(len(prompt) - 1):  # entry j scores token j+1
        assert k0["prompt_ids"][j] == [prompt[j + 1]]
        assert k0["prompt_logprobs"][j][0] == pytest.approx(float(logp[j, prompt[j + 1]]), abs=1e-4)
    k3 = generate(server, prompt, temperature=0, max_tokens=1, prompt_logprobs=3).extra_fields
    top = logp[0].topk(3)
    assert k3["prompt_ids"][0] == top.indices.tolist()
    assert k3["prompt_logprobs"][0] == pytest.approx(top.values.tolist(), abs=1e-4)
    assert k3["prompt_logprobs"][-1] == [0.0, 0.0, 0.0]


def test_the_token_budget_is_verls(server):
    assert tr.max_new_tokens(10, prompt_length=64, response_length=16, max_model_len=None) == 16
    assert tr.max_new_tokens(70, prompt_length=64, response_length=16, max_model_len=None) == 10
    assert tr.max_new_tokens(10, prompt_length=64, response_length=16, max_model_len=None, requested=1) == 1
    with pytest.raises(ValueError, match="leaves no room"):
        tr.max_new_tokens(80, prompt_length=64, response_length=16, max_model_len=None)
    out = generate(server, [1, 2, 3], temperature=1.0, max_tokens=4)
    assert 1 <= len(out.token_ids) <= 4


def test_weight_update_changes_the_served_model_and_tags_the_version(server):
    prompt = [7, 7, 7]
    before = forward_logits(server, prompt)
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in server.model.state_dict().items()}
    record = server.update_weights(state, global_steps=5)
    assert record["missing"] == 0 and record["loaded"] == len(state) and server.global_steps == 5
    assert not torch.allclose(before, forward_logits(server, prompt))
    assert generate(server, prompt, temperature=0, max_tokens=1).extra_fields["global_steps"] == 5
    assert server.stats()["weight_updates"][-1]["global_steps"] == 5


class DirectClient:
    """verl's ``LLMServerClient.generate`` signature straight to one server (no load balancer actor)."""

    def __init__(self, server) -> None:
        self.server = server

    async def generate(self, request_id, *, prompt_ids, sampling_params, **_):
        return await self.server.generate(prompt_ids=prompt_ids, sampling_params=sampling_params, request_id=request_id)


def test_scoring_requests_return_the_response_positions_top_k(server):
    from adapters.verl.scoring import score_topk

    sequences = [([3, 8, 13, 21, 34, 55], 4), ([7, 7, 2, 9], 1)]
    answers = asyncio.run(score_topk(DirectClient(server), sequences, 5))
    for (ids, prompt_len), got in zip(sequences, answers):
        logp = torch.log_softmax(forward_logits(server, ids), -1)
        rows = logp[prompt_len - 1: len(ids) - 1]  # the distributions of the response tokens
        top = rows.topk(5, dim=-1)
        assert got.ids.tolist() == top.indices.tolist()
        torch.testing.assert_close(got.logp, top.values, atol=1e-4, rtol=0)


def test_scoring_answers_are_checked():
    from adapters.verl.scoring import response_rows, score_params

    with pytest.raises(ValueError, match="integer >= 1"):
        score_params(0)
    with pytest.raises(ValueError, match="scored 3 positions of a 5-token sequence"):
        response_rows([[1]] * 3, [[0.0]] * 3, prompt_len=2, response_len=3, k=1)
    with pytest.raises(ValueError, match="max_logprobs"):
        response_rows([[1, 2]] * 5, [[0.0, 0.0]] * 5, prompt_len=2, response_len=3, k=4)


def test_vllm_rollouts_without_enough_logprobs_are_refused_before_training():
    from omegaconf import OmegaConf

    from adapters.verl.trainer import check_prompt_logprobs

    check_prompt_logprobs(OmegaConf.create({"name": "vllm", "engine_kwargs": {"vllm": {}}}), 20)
    check_prompt_logprobs(OmegaConf.create({"name": "transformers"}), 500)
    check_prompt_logprobs(OmegaConf.create({"name": "vllm", "engine_kwargs": {"vllm": {"max_logprobs": 64}}}), 64)
    with pytest.raises(ValueError, match="engine_kwargs.vllm.max_logprobs=21"):
        check_prompt_logprobs(OmegaConf.create({"name": "vllm", "engine_kwargs": {"vllm": {}}}), 21)

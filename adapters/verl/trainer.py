"""verl v1 sync trainers for SGCD and SDPO, and the Ray task runner that installs them.

Both subclass ``verl.trainer.ppo.v1.trainer_sync.PPOTrainerSync`` and keep ``trainer_mode=sync``
(verl branches on that string). :class:`SGCDTaskRunner` swaps the class behind the ``"sync"``
entry of verl's ``TRAINER_REGISTRY`` inside its own process only, then runs verl's own
``TaskRunnerV1.run`` — no verl file is patched.

- :class:`SGCDTrainerSync` — after verl's ``_compute_advantage`` (GRPO + filter-groups already
  applied): episodes → credit references (:func:`adapters.verl.teacher.sgcd_teacher_messages`) →
  teacher records (teacher prompt + the student's own response tokens) scored by the actor's
  ``compute_log_prob`` (π_old weights, no grad) → :func:`adapters.verl.credit.apply_credit_weights`
  → ``advantages`` and ``credit_weights`` written back to TransferQueue. The stock loss then runs.
- :class:`SDPOTrainerSync` — installs :func:`adapters.verl.losses.sdpo_engine_loss` on the actor
  workers; after ``_compute_advantage`` it scores the reprompted contexts the same way and puts
  ``teacher_log_probs`` and ``sdpo_sample_mask`` next to each trajectory.

These classes need Ray, TransferQueue and a rollout server: ``tests/verl/test_end_to_end.py`` runs
them in verl's own trainer on the CPU (:mod:`adapters.verl.cpu_mode`, the transformers rollout
backend), and ``adapters/verl/gpu_smoke.sh`` on a GPU.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import ray
import torch
import transfer_queue as tq
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl import DataProto
from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
from verl.workers.utils.padding import response_from_nested, response_to_nested

from adapters.verl import plugin
from adapters.verl.config import verl_methods
from adapters.verl.credit import apply_credit_weights
from adapters.verl.losses import sdpo_engine_loss
from adapters.verl.teacher import (
    Episode,
    episode_from_extra,
    offline_summarizers,
    sdpo_teacher_messages,
    sgcd_teacher_messages,
    teacher_tools,
)
from algorithms.registry import get_method
from sgcd_common import load_entry_point

TEACHER_KEY_SUFFIX = "::sgcd_teacher"


def pad_to_multiple(rows: list[int], multiple: int) -> list[int]:
    """``rows`` repeated cyclically up to the next multiple of ``multiple`` (``[]`` stays ``[]``).

    verl splits a ``compute_log_prob`` batch over the data-parallel ranks, and a rank handed no
    row fails; SGCD / SDPO score only the rows that have a teacher context, whose number need not
    divide by dp. The repeats are scored and dropped.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if not rows:
        return []
    return [rows[j % len(rows)] for j in range(-(-len(rows) // multiple) * multiple)]


def _rows(td: TensorDict, key: str) -> list[Any]:
    value = td[key]
    return list(value.tolist() if hasattr(value, "tolist") else value)


class _TeacherScoringMixin:
    """Score teacher contexts on the student's response tokens with the actor's compute_log_prob."""

    def _episodes(self, batch: KVBatchMeta) -> tuple[list[Episode], TensorDict]:
        """Episodes of the batch; each keeps its env (``extra_fields["env_id"]``) and env feedback
        (``extra_fields["feedback"]``, else ``reward_extra_info["feedback"]``)."""
        data = tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id,
            select_fields=["uid", "rm_scores", "response_mask", "responses", "extra_fields"],
        )
        extras = _rows(data, "extra_fields")
        rewards = [float(r.sum()) for r in data["rm_scores"].unbind(0)]
        episodes = [episode_from_extra(str(u), rewards[i], extras[i]) for i, u in enumerate(_rows(data, "uid"))]
        return episodes, data

    def _teacher_log_probs(self, batch: KVBatchMeta, messages: list[list[dict] | None], data: TensorDict,
                           old_log_probs: torch.Tensor, episodes: list[Episode]) -> torch.Tensor:
        """(B, T) teacher log-probs; rows without a teacher context get ``old_log_probs`` (D̂ = 0).

        Each teacher prompt is tokenised with its episode's env tools (:func:`teacher_tools`:
        τ³'s schemas, none for AppWorld), as the agent loop tokenised the student prompt.
        """
        rows = [i for i, m in enumerate(messages) if m is not None]
        out = old_log_probs.clone()
        if not rows:
            return out
        builder = getattr(self, "_ct_builder", None) or create_continuous_token_builder(self.tokenizer)
        self._ct_builder = builder
        responses = data["responses"].unbind(0)
        resp_masks = data["response_mask"].unbind(0)
        fields: dict[str, list[torch.Tensor]] = {k: [] for k in
                                                 ("prompts", "responses", "input_ids", "attention_mask",
                                                  "position_ids", "response_mask", "loss_mask")}
        tags = []
        scored = pad_to_multiple(rows, self.actor_rollout_wg.world_size)
        for i in scored:
            tools = teacher_tools(episodes[i].env_id)
            prompt = torch.tensor(builder.build_initial_tokens(messages[i], tools=tools), dtype=torch.int64)
            resp = responses[i].to(torch.int64)
            ids = torch.cat([prompt, resp])
            for key, value in (("prompts", prompt), ("responses", resp), ("input_ids", ids),
                               ("attention_mask", torch.ones_like(ids)), ("position_ids", torch.arange(ids.numel())),
                               ("response_mask", resp_masks[i]), ("loss_mask", resp_masks[i])):
                fields[key].append(value)
            tags.append({"status": "success", "prompt_len": prompt.numel(), "response_len": resp.numel(),
                         "seq_len": ids.numel()})
        keys = [f"{batch.keys[i]}{TEACHER_KEY_SUFFIX}{j}" for j, i in enumerate(scored)]
        nested = TensorDict({k: torch.nested.as_nested_tensor(v, layout=torch.jagged) for k, v in fields.items()},
                            batch_size=len(scored))
        tq.kv_batch_put(keys=keys, partition_id=batch.partition_id, fields=nested, tags=tags)
        try:
            meta = KVBatchMeta(partition_id=batch.partition_id, keys=keys, tags=tags,
                               extra_info={"calculate_entropy": False, "compute_loss": False,
                                           "temperature": self.config.actor_rollout_ref.rollout.temperature})
            self.actor_rollout_wg.compute_log_prob(meta)
            got = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["log_probs", "response_mask"])
            teacher = response_from_nested(got["log_probs"], got["response_mask"]).to_padded_tensor(0.0)
        finally:
            tq.kv_clear(keys=keys, partition_id=batch.partition_id)
        width = min(out.shape[1], teacher.shape[1])
        out[rows, :width] = teacher[: len(rows), :width].to(out.dtype)
        return out

    def _padded(self, batch: KVBatchMeta, fields: list[str]) -> tuple[DataProto, torch.Tensor]:
        td = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        nested_mask = td["response_mask"]
        return DataProto(batch=td.to_padded_tensor()), nested_mask


class SGCDTrainerSync(_TeacherScoringMixin, PPOTrainerSync):
    """PPOTrainerSync + SGCD credit weights written into the batch after the advantage step."""

    def init(self):
        plugin.check_registered()
        super().init()
        section = omega_conf_to_dataclass(self.config.algorithm).sgcd
        self.sgcd_section = section
        if section.summarizer == "llm":
            from adapters.llm.client import ChatClient, LLMEndpoint
            from adapters.llm.summarizer import LLMSummarizer

            endpoint = LLMEndpoint(base_url=section.summarizer_base_url, model=section.summarizer_model,
                                   api_key_env=section.summarizer_api_key_env)
            self.summarizer = LLMSummarizer(ChatClient(endpoint, cache_dir=".sgcd-cache/verl"))
        else:  # the offline stand-in, one per env (τ³: its write tools; AppWorld: none)
            self.summarizer = offline_summarizers()

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        episodes, raw = self._episodes(batch)
        teacher_msgs, ref_metrics = sgcd_teacher_messages(
            episodes, self.summarizer, success_threshold=self.sgcd_section.success_threshold)
        data, nested_mask = self._padded(batch, ["advantages", "response_mask", "old_log_probs", "entropy"])
        teacher = self._teacher_log_probs(batch, teacher_msgs, raw, data.batch["old_log_probs"], episodes)
        has_ref = torch.tensor([m is not None for m in teacher_msgs])
        metrics.update(ref_metrics)
        metrics.update(apply_credit_weights(data, teacher, self.sgcd_section, has_reference=has_ref))
        out = TensorDict({k: response_to_nested(data.batch[k], nested_mask) for k in ("advantages", "credit_weights")},
                         batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=out)


class SDPOTrainerSync(_TeacherScoringMixin, PPOTrainerSync):
    """PPOTrainerSync whose actor loss is SDPO on teacher log-probs over the reprompted context."""

    def init(self):
        plugin.check_registered()
        super().init()
        self.sdpo_section = omega_conf_to_dataclass(self.config.algorithm).sdpo
        actor_cfg = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
        self.actor_rollout_wg.set_loss_fn(partial(sdpo_engine_loss, config=actor_cfg))

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        episodes, raw = self._episodes(batch)
        teacher_msgs, sample_mask = sdpo_teacher_messages(
            episodes, success_threshold=self.sdpo_section.success_threshold,
            use_feedback=self.sdpo_section.use_feedback)
        data, nested_mask = self._padded(batch, ["response_mask", "old_log_probs"])
        teacher = self._teacher_log_probs(batch, teacher_msgs, raw, data.batch["old_log_probs"], episodes)
        metrics["sdpo/frac_samples_with_teacher"] = float(sample_mask.mean()) if len(sample_mask) else 0.0
        out = TensorDict({"teacher_log_probs": response_to_nested(teacher, nested_mask),
                          "sdpo_sample_mask": sample_mask}, batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=out)


def trainer_class(method: str) -> type[PPOTrainerSync]:
    """The verl sync trainer of a registered method (``MethodSpec.verl`` in
    ``algorithms.registry``); a method without one is refused with the methods that have one."""
    spec = get_method(method)
    if spec.verl is None:
        raise ValueError(f"algorithm.method={method!r} has no verl trainer (it runs in the local trainer only). "
                         f"Methods with one: {', '.join(verl_methods())}.")
    return load_entry_point(spec.verl)


def install_trainer(method: str) -> type[PPOTrainerSync]:
    """Point verl's ``"sync"`` trainer entry at the class for ``method`` (this process only)."""
    cls = trainer_class(method)
    trainer_base.TRAINER_REGISTRY["sync"] = cls
    return cls


@ray.remote
class SGCDTaskRunner(TaskRunnerV1.__ray_actor_class__):
    """verl's ``TaskRunnerV1`` with the sgcd-bench trainer installed for ``algorithm.method``."""

    def run(self, config):
        plugin.check_registered()
        if config.trainer.v1.trainer_mode != "sync":
            raise ValueError(f"sgcd-bench trainers need trainer.v1.trainer_mode=sync, got {config.trainer.v1.trainer_mode!r}")
        install_trainer(str(config.algorithm.method))
        return super().run(config)

"""verl v1 sync trainers for SGCD and SDPO, and the Ray task runner that installs them.

Both subclass ``verl.trainer.ppo.v1.trainer_sync.PPOTrainerSync`` and keep ``trainer_mode=sync``
(verl branches on that string). :class:`SGCDTaskRunner` swaps the class behind the ``"sync"``
entry of verl's ``TRAINER_REGISTRY`` inside its own process only, then runs verl's own
``TaskRunnerV1.run`` — no verl file is patched.

- :class:`SGCDTrainerSync` — after verl's ``_compute_advantage`` (GRPO + filter-groups already
  applied): episodes → credit references (:func:`adapters.verl.teacher.sgcd_teacher_messages`) →
  per-token divergences (``algorithm.sgcd.divergence_estimator``: ``exact`` scores each row's
  student and teacher contexts side by side in the actor, ``shared_topk`` on the rollout server,
  ``k3_sampled_token`` the teacher context alone in the actor) →
  :func:`adapters.verl.credit.apply_credit_weights` → ``advantages`` and ``credit_weights``
  written back to TransferQueue. The stock loss then runs.
- :class:`SDPOTrainerSync` — installs :func:`adapters.verl.losses.sdpo_engine_loss` on the actor
  workers; after ``_compute_advantage`` it builds the reprompted contexts and, per distilled row,
  the top-k + tail bins (``topk``) or the teacher's sampled-token log-probs (``sampled_token``)
  next to each trajectory.

These classes need Ray, TransferQueue and a rollout server: ``tests/verl/test_end_to_end.py`` runs
them in verl's own trainer on the CPU (:mod:`adapters.verl.cpu_mode`, the transformers rollout
backend), and ``adapters/verl/gpu_smoke.sh`` on a GPU.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import time

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
from adapters.verl.credit import apply_credit_weights, sampled_token_divergence
from adapters.verl.scoring import TopK, score_topk
from adapters.verl.losses import PAIR_SCORING, SDPO_PAIR_SCORING, bin_columns, sdpo_engine_loss, sgcd_engine_loss
from adapters.verl.teacher import (
    Episode,
    episode_from_extra,
    offline_summarizers,
    sdpo_teacher_messages,
    sgcd_teacher_messages,
    teacher_tools,
)
from algorithms.registry import get_method
from algorithms.topk import reverse_kl_shared_topk
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
            select_fields=["uid", "rm_scores", "response_mask", "prompts", "responses", "extra_fields"],
        )
        extras = _rows(data, "extra_fields")
        rewards = [float(r.sum()) for r in data["rm_scores"].unbind(0)]
        episodes = [episode_from_extra(str(u), rewards[i], extras[i]) for i, u in enumerate(_rows(data, "uid"))]
        return episodes, data

    def _teacher_prompt(self, messages: list[dict], episode: Episode) -> list[int]:
        """A teacher prompt's token ids, tokenised as the agent loop tokenised the student prompt
        (verl's Continuous-Token builder with the episode's env tools: τ³'s schemas, none for AppWorld)."""
        return list(self._token_builder().build_initial_tokens(messages, tools=teacher_tools(episode.env_id)))

    def _score_on_actor(self, batch: KVBatchMeta, records: list[tuple[list[int], torch.Tensor, torch.Tensor]],
                        extra_info: dict[str, Any], select: list[str]) -> TensorDict:
        """Run the actor's ``compute_log_prob`` (no grad, π_old weights) on extra records.

        ``records``: ``(prompt ids, response ids, response mask)`` each, put into TransferQueue under
        keys of their own next to the batch and cleared after; ``select``: the output fields read
        back, one row per record, in order.
        """
        fields: dict[str, list[torch.Tensor]] = {k: [] for k in
                                                 ("prompts", "responses", "input_ids", "attention_mask",
                                                  "position_ids", "response_mask", "loss_mask")}
        tags = []
        for prompt_ids, resp, resp_mask in records:
            prompt = torch.tensor(prompt_ids, dtype=torch.int64)
            resp = resp.to(torch.int64)
            ids = torch.cat([prompt, resp])
            for key, value in (("prompts", prompt), ("responses", resp), ("input_ids", ids),
                               ("attention_mask", torch.ones_like(ids)), ("position_ids", torch.arange(ids.numel())),
                               ("response_mask", resp_mask), ("loss_mask", resp_mask)):
                fields[key].append(value)
            tags.append({"status": "success", "prompt_len": prompt.numel(), "response_len": resp.numel(),
                         "seq_len": ids.numel()})
        keys = [f"{batch.keys[0]}{TEACHER_KEY_SUFFIX}{j}" for j in range(len(records))]
        nested = TensorDict({k: torch.nested.as_nested_tensor(v, layout=torch.jagged) for k, v in fields.items()},
                            batch_size=len(records))
        tq.kv_batch_put(keys=keys, partition_id=batch.partition_id, fields=nested, tags=tags)
        try:
            meta = KVBatchMeta(partition_id=batch.partition_id, keys=keys, tags=tags,
                               extra_info={"temperature": self.config.actor_rollout_ref.rollout.temperature, **extra_info})
            self.actor_rollout_wg.compute_log_prob(meta)
            return tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=select)
        finally:
            tq.kv_clear(keys=keys, partition_id=batch.partition_id)

    def _score_pairs(self, batch: KVBatchMeta, rows: list[int], messages: list[list[dict] | None], raw: TensorDict,
                     episodes: list[Episode], flags: dict[str, Any], select: list[str], metrics: dict,
                     prefix: str) -> TensorDict:
        """``compute_log_prob`` over each row's (student, teacher) records side by side, with
        verl's top-k logits hook on (``flags`` tell the engine loss what to compute there).

        Records ``[student_0, teacher_0, student_1, teacher_1, …]``, pairs repeated up to a
        multiple of the dp size, so each rank's contiguous chunk holds whole pairs; micro-batches
        of 2. Returns the ``select`` fields, one row per record (row 2j: row ``rows[j]``'s student).
        Metrics: ``{prefix}/scored_records``, ``{prefix}/scored_tokens``.
        """
        responses, resp_masks = raw["responses"].unbind(0), raw["response_mask"].unbind(0)
        prompts = raw["prompts"].unbind(0)
        records = []
        for i in pad_to_multiple(rows, self.actor_rollout_wg.world_size):
            records += [(prompts[i].tolist(), responses[i], resp_masks[i]),
                        (self._teacher_prompt(messages[i], episodes[i]), responses[i], resp_masks[i])]
        metrics[f"{prefix}/scored_tokens"] = float(sum(len(p) + len(r) for p, r, _ in records))
        return self._score_on_actor(batch, records, {"calculate_entropy": False, "compute_loss": True,
                                                     "distillation_use_topk": True, "use_dynamic_bsz": False,
                                                     "micro_batch_size_per_gpu": 2, **flags}, select)

    def _teacher_log_probs(self, batch: KVBatchMeta, messages: list[list[dict] | None], data: TensorDict,
                           old_log_probs: torch.Tensor, episodes: list[Episode]) -> torch.Tensor:
        """(B, T) teacher log-probs of the sampled tokens; rows without a teacher context get
        ``old_log_probs`` (D̂ = 0)."""
        rows = [i for i, m in enumerate(messages) if m is not None]
        out = old_log_probs.clone()
        if not rows:
            return out
        responses, resp_masks = data["responses"].unbind(0), data["response_mask"].unbind(0)
        scored = pad_to_multiple(rows, self.actor_rollout_wg.world_size)
        records = [(self._teacher_prompt(messages[i], episodes[i]), responses[i], resp_masks[i]) for i in scored]
        got = self._score_on_actor(batch, records, {"calculate_entropy": False, "compute_loss": False},
                                   ["log_probs", "response_mask"])
        teacher = response_from_nested(got["log_probs"], got["response_mask"]).to_padded_tensor(0.0)
        width = min(out.shape[1], teacher.shape[1])
        out[rows, :width] = teacher[: len(rows), :width].to(out.dtype)
        return out

    def _max_model_len(self) -> int:
        rollout = self.config.actor_rollout_ref.rollout
        return int(rollout.get("max_model_len") or (rollout.prompt_length + rollout.response_length))

    def _llm_client(self) -> Any:
        if getattr(self, "_scoring_client", None) is None:
            self._scoring_client = self.get_llm_client()
        return self._scoring_client

    def _score_contexts(self, messages: list[list[dict] | None], raw: TensorDict, episodes: list[Episode], k: int,
                        metrics: dict, prefix: str) -> dict[int, tuple[TopK, TopK]]:
        """Row → (student, teacher) top-k distributions at its response tokens, from the rollout server.

        Per row with a teacher context, two scoring requests (:func:`adapters.verl.scoring.score_topk`):
        the student's prompt + response and the teacher's prompt + the same response. verl put
        the servers to sleep after the rollout; they get the actor's weights again first — still
        π_old, the weights that sampled the batch, since the update comes later in the step — and
        sleep again after. A row whose sequence + 1 token exceeds the rollout's ``max_model_len``
        is left out (``{prefix}/frac_rows_unscored``). Metrics: ``{prefix}/score_requests``,
        ``{prefix}/scored_tokens``.
        """
        limit = self._max_model_len()
        prompts, responses = raw["prompts"].unbind(0), raw["responses"].unbind(0)
        rows, sequences, too_long = [], [], 0
        for i, msgs in enumerate(messages):
            if msgs is None:
                continue
            response, student = responses[i].tolist(), prompts[i].tolist()
            teacher = self._teacher_prompt(msgs, episodes[i])
            if max(len(student), len(teacher)) + len(response) + 1 > limit:
                too_long += 1
                continue
            rows.append(i)
            sequences += [(student + response, len(student)), (teacher + response, len(teacher))]
        with_context = sum(m is not None for m in messages)
        metrics[f"{prefix}/frac_rows_unscored"] = too_long / with_context if with_context else 0.0
        metrics[f"{prefix}/score_requests"] = float(len(sequences))
        metrics[f"{prefix}/scored_tokens"] = float(sum(len(ids) for ids, _ in sequences))
        if not sequences:
            return {}
        self.checkpoint_manager.update_weights(self.global_steps)  # π_old back on the rollout servers
        try:
            answers = _run_async(score_topk(self._llm_client(), sequences, k))
        finally:
            self.checkpoint_manager.sleep_replicas()
        return {i: (answers[2 * j], answers[2 * j + 1]) for j, i in enumerate(rows)}

    def _token_builder(self) -> Any:
        """verl's Continuous-Token builder (the agent loop's prompt tokenisation), built once."""
        if getattr(self, "_ct_builder", None) is None:
            self._ct_builder = create_continuous_token_builder(self.tokenizer)
        return self._ct_builder

    def _padded(self, batch: KVBatchMeta, fields: list[str]) -> tuple[DataProto, torch.Tensor]:
        td = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        nested_mask = td["response_mask"]
        return DataProto(batch=td.to_padded_tensor()), nested_mask


class SGCDTrainerSync(_TeacherScoringMixin, PPOTrainerSync):
    """PPOTrainerSync + SGCD credit weights written into the batch after the advantage step."""

    def init(self):
        plugin.check_registered()
        section = omega_conf_to_dataclass(self.config.algorithm).sgcd
        if section.divergence_estimator == "shared_topk":  # before any worker starts
            check_prompt_logprobs(self.config.actor_rollout_ref.rollout, section.divergence_topk)
        if section.divergence_estimator == "exact" and self.config.actor_rollout_ref.actor.strategy not in ("fsdp", "fsdp2"):
            raise ValueError(f"algorithm.sgcd.divergence_estimator=exact needs the FSDP engine (verl 0.9.1's top-k "
                             f"logits hook); got actor.strategy={self.config.actor_rollout_ref.actor.strategy!r}. "
                             "Use divergence_estimator=shared_topk on Megatron.")
        super().init()
        self.sgcd_section = section
        if section.divergence_estimator == "exact":
            actor_cfg = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
            self.actor_rollout_wg.set_loss_fn(partial(sgcd_engine_loss, config=actor_cfg))
        if section.summarizer == "llm":
            from adapters.llm.client import ChatClient, LLMEndpoint
            from adapters.llm.summarizer import LLMSummarizer

            endpoint = LLMEndpoint(base_url=section.summarizer_base_url, model=section.summarizer_model,
                                   api_key_env=section.summarizer_api_key_env)
            self.summarizer = LLMSummarizer(ChatClient(endpoint, cache_dir=".sgcd-cache/verl"))
        else:  # the offline stand-in, one per env (τ³: its write tools; AppWorld: none)
            self.summarizer = offline_summarizers()

    DIVERGENCE_ESTIMATORS = {"exact": "_exact_divergence", "shared_topk": "_shared_topk_divergence",
                             "k3_sampled_token": "_k3_divergence"}
    """``algorithm.sgcd.divergence_estimator`` → the method computing (B, T) divergences and the rows scored."""

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        episodes, raw = self._episodes(batch)
        teacher_msgs, ref_metrics = sgcd_teacher_messages(
            episodes, self.summarizer, success_threshold=self.sgcd_section.success_threshold)
        data, nested_mask = self._padded(batch, ["advantages", "response_mask", "old_log_probs", "entropy"])
        estimate = getattr(self, self.DIVERGENCE_ESTIMATORS[self.sgcd_section.divergence_estimator])
        started = time.perf_counter()
        divergence, scored = estimate(batch, teacher_msgs, raw, data, episodes, metrics)
        metrics["timing_s/sgcd_divergence"] = time.perf_counter() - started
        metrics.update(ref_metrics)
        metrics.update(apply_credit_weights(data, divergence, self.sgcd_section, has_reference=scored))
        out = TensorDict({k: response_to_nested(data.batch[k], nested_mask) for k in ("advantages", "credit_weights")},
                         batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=out)

    def _exact_divergence(self, batch: KVBatchMeta, messages: list[list[dict] | None], raw: TensorDict,
                          data: DataProto, episodes: list[Episode], metrics: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-vocabulary D_t from the actor: each row's (student, teacher) contexts side by side.

        The pairs go through :meth:`_score_pairs`, whose logits hook hands
        :func:`adapters.verl.losses.sgcd_engine_loss` both contexts' logits at once
        (:func:`adapters.verl.losses.pair_divergence`). Cost: one forward over both contexts per
        row with a reference, in the actor, no weights moved.
        """
        rows = [i for i, m in enumerate(messages) if m is not None]
        divergence = torch.zeros_like(data.batch["advantages"], dtype=torch.float32)
        scored = torch.tensor([m is not None for m in messages])
        metrics["sgcd/scored_records"] = float(2 * len(rows))
        if not rows:
            return divergence, scored
        got = self._score_pairs(batch, rows, messages, raw, episodes, {PAIR_SCORING: True},
                                ["sgcd_divergence", "response_mask"], metrics, "sgcd")
        values = response_from_nested(got["sgcd_divergence"], got["response_mask"]).to_padded_tensor(0.0)
        width = min(divergence.shape[1], values.shape[1])
        divergence[rows, :width] = values[0: 2 * len(rows): 2, :width].float()
        return divergence, scored

    def _k3_divergence(self, batch: KVBatchMeta, messages: list[list[dict] | None], raw: TensorDict, data: DataProto,
                       episodes: list[Episode], metrics: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """k3 at the sampled token: the teacher context scored by the actor's ``compute_log_prob``."""
        old = data.batch["old_log_probs"]
        teacher = self._teacher_log_probs(batch, messages, raw, old, episodes)
        return sampled_token_divergence(old, teacher), torch.tensor([m is not None for m in messages])

    def _shared_topk_divergence(self, batch: KVBatchMeta, messages: list[list[dict] | None], raw: TensorDict,
                                data: DataProto, episodes: list[Episode],
                                metrics: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse KL over the shared top-k bins (``algorithms.topk.reverse_kl_shared_topk``) of
        the student's and the teacher's context, both scored on the rollout server."""
        width = data.batch["advantages"].shape[1]
        divergence = torch.zeros_like(data.batch["advantages"], dtype=torch.float32)
        scored = torch.zeros(len(messages), dtype=torch.bool)
        answers = self._score_contexts(messages, raw, episodes, self.sgcd_section.divergence_topk, metrics, "sgcd")
        for i, (student, teacher) in answers.items():
            d = reverse_kl_shared_topk(student.ids, student.logp, teacher.ids, teacher.logp)[:width]
            divergence[i, : d.numel()] = d
            scored[i] = True
        return divergence, scored


class SDPOTrainerSync(_TeacherScoringMixin, PPOTrainerSync):
    """PPOTrainerSync whose actor loss is SDPO against the reprompted teacher context.

    ``algorithm.sdpo.divergence``:

    - ``topk`` (default, FSDP): lasgroup/SDPO's top-k + tail generalised JSD. After the advantage
      step, each distilled row's (student, reprompted teacher) contexts go through the actor's
      ``compute_log_prob`` side by side (verl's top-k logits hook), which returns the student's
      top-k ids at π_old and the teacher's log-probs at them plus the tail bin
      (:func:`adapters.verl.losses.pair_topk_bins`); in the update, the same hook (switched on
      for this trainer's ``update_actor`` calls) hands the live student logits to
      :func:`adapters.verl.losses.sdpo_engine_loss`, which forms the JSD over those bins with
      gradient. With one PPO epoch over one mini-batch (SDPO's setting) the ids are the live
      student's top-k, as in lasgroup/SDPO; off-policy mini-batches keep π_old's ids.
    - ``sampled_token``: the teacher's log-prob of the sampled token (actor ``compute_log_prob``)
      and the sampled-token reverse-KL form of the loss (any engine).
    """

    def init(self):
        plugin.check_registered()
        section = omega_conf_to_dataclass(self.config.algorithm).sdpo
        if section.divergence == "topk" and self.config.actor_rollout_ref.actor.strategy not in ("fsdp", "fsdp2"):
            raise ValueError(f"algorithm.sdpo.divergence=topk needs the FSDP engine (verl 0.9.1's top-k logits hook); "
                             f"got actor.strategy={self.config.actor_rollout_ref.actor.strategy!r}. "
                             "Use algorithm.sdpo.divergence=sampled_token on Megatron.")
        super().init()
        self.sdpo_section = section
        actor_cfg = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
        self.actor_rollout_wg.set_loss_fn(partial(sdpo_engine_loss, config=actor_cfg))

    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        episodes, raw = self._episodes(batch)
        section = self.sdpo_section
        teacher_msgs, sample_mask = sdpo_teacher_messages(
            episodes, success_threshold=section.success_threshold, use_feedback=section.use_feedback)
        data, nested_mask = self._padded(batch, ["response_mask", "old_log_probs"])
        started = time.perf_counter()
        if section.divergence == "topk":
            fields = self._topk_bins(batch, teacher_msgs, raw, episodes, metrics)
        else:
            teacher = self._teacher_log_probs(batch, teacher_msgs, raw, data.batch["old_log_probs"], episodes)
            fields = {"teacher_log_probs": response_to_nested(teacher, nested_mask)}
        metrics["timing_s/sdpo_teacher"] = time.perf_counter() - started
        metrics["sdpo/frac_samples_with_teacher"] = float(sample_mask.mean()) if len(sample_mask) else 0.0
        out = TensorDict({**fields, "sdpo_sample_mask": sample_mask}, batch_size=len(batch))
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=out)

    def _topk_bins(self, batch: KVBatchMeta, messages: list[list[dict] | None], raw: TensorDict,
                   episodes: list[Episode], metrics: dict) -> dict[str, torch.Tensor]:
        """``sdpo_bin_ids`` / ``sdpo_teacher_bins`` of every row (:func:`fold_bins`) from the actor's
        pair scoring (:func:`adapters.verl.losses.pair_topk_bins`); rows without a teacher context
        get placeholder bins (their sample mask is 0)."""
        k = self.sdpo_section.topk
        rows = [i for i, m in enumerate(messages) if m is not None]
        response_lens = raw["response_mask"].offsets().diff().tolist()
        per_row: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        metrics["sdpo/scored_records"] = float(2 * len(rows))
        if rows:
            id_names, bin_names = bin_columns(k)
            got = self._score_pairs(batch, rows, messages, raw, episodes, {SDPO_PAIR_SCORING: True, "sdpo_topk": k},
                                    [*id_names, *bin_names, "response_mask"], metrics, "sdpo")
            columns = {n: response_from_nested(got[n], got["response_mask"]).unbind(0) for n in (*id_names, *bin_names)}
            for j, i in enumerate(rows):
                per_row[i] = (torch.stack([columns[n][2 * j] for n in id_names], dim=-1),
                              torch.stack([columns[n][2 * j] for n in bin_names], dim=-1))
        return fold_bins(per_row, response_lens, k)

    def _update_actor(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        if self.sdpo_section.divergence != "topk":
            return super()._update_actor(batch, metrics)
        workers = self.actor_rollout_wg
        self.actor_rollout_wg = _TopkLogitsHook(workers)
        try:
            return super()._update_actor(batch, metrics)
        finally:
            self.actor_rollout_wg = workers


class _TopkLogitsHook:
    """The actor worker group, with verl's top-k logits hook switched on for ``update_actor``.

    verl's ``_update_actor`` sets ``distillation_use_topk`` from its own distillation config (off
    here: SDPO's teacher is the policy, not a separate teacher server); with it on, the FSDP
    engine calls the loss function once as a logits processor on the micro-batch's student logits
    before calling it as the loss. Every other call goes to the worker group unchanged.
    """

    def __init__(self, workers: Any) -> None:
        self._workers = workers

    def update_actor(self, batch: KVBatchMeta) -> Any:
        batch.extra_info["distillation_use_topk"] = True
        return self._workers.update_actor(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._workers, name)


def fold_bins(per_row: dict[int, tuple[torch.Tensor, torch.Tensor]], response_lens: list[int],
              k: int) -> dict[str, torch.Tensor]:
    """SDPO's per-token bins for the update, as jagged fields of one ragged axis (R_i·K values a row).

    ``per_row``: row → ((R, k) student top-k ids, (R, k + 1) teacher log-probs over those bins,
    tail last). ``sdpo_bin_ids`` holds R_i·k ids, ``sdpo_teacher_bins`` R_i·(k + 1) log-probs;
    rows missing from ``per_row`` (not distilled) get ids 0 and an all-tail teacher.
    """
    ids, bins = [], []
    for i, r in enumerate(response_lens):
        if i in per_row:
            row_ids, row_bins = per_row[i]
            ids.append(row_ids[:r].reshape(-1).to(torch.int64))
            bins.append(row_bins[:r].reshape(-1).float())
        else:
            ids.append(torch.zeros(r * k, dtype=torch.int64))
            bins.append(torch.cat([torch.full((r, k), float("-inf")), torch.zeros(r, 1)], dim=-1).reshape(-1))
    return {"sdpo_bin_ids": torch.nested.as_nested_tensor(ids, layout=torch.jagged),
            "sdpo_teacher_bins": torch.nested.as_nested_tensor(bins, layout=torch.jagged)}


VLLM_DEFAULT_MAX_LOGPROBS = 20
"""vLLM's default cap on returned log-probs per position (``max_logprobs``)."""


def check_prompt_logprobs(rollout: Any, k: int) -> None:
    """Refuse, before training starts, a vLLM rollout that would return fewer than k log-probs."""
    if rollout.get("name") != "vllm":
        return
    engine = (rollout.get("engine_kwargs") or {}).get("vllm") or {}
    cap = engine.get("max_logprobs") or VLLM_DEFAULT_MAX_LOGPROBS
    if int(cap) < k:
        raise ValueError(f"algorithm.sgcd.divergence_topk={k} needs vLLM to return {k} log-probs per position, but "
                         f"its max_logprobs is {cap}: set actor_rollout_ref.rollout.engine_kwargs.vllm.max_logprobs={k} "
                         f"(or lower divergence_topk)")


def _run_async(coroutine: Any) -> Any:
    """Run a coroutine to completion from the driver's synchronous code (verl's ``auto_await``)."""
    from verl.utils.ray_utils import auto_await

    async def wrapped() -> Any:
        return await coroutine

    return auto_await(wrapped)()


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

"""A verl 0.9.1 rollout backend that serves the agent loop with plain transformers (CPU or one GPU).

``actor_rollout_ref.rollout.name=transformers`` selects it. It exists so that verl's own trainer
can run end to end where vLLM cannot: on a CPU (``adapters.verl.cpu_mode``, CI) and on a GPU
machine that has no vLLM. It is a test and try-out backend, not a fast one: one request is
decoded at a time with ``model.generate``; use vLLM for real training.

Three pieces, each behind a verl extension point:

- :class:`TransformersServer` — a Ray actor holding a transformers model. It answers the
  token-in/token-out ``generate`` call of verl's ``LLMServerClient`` with a ``TokenOutput``
  (sampled ids, their raw log-probs, ``extra_fields["global_steps"]`` = the weight version and,
  when asked with vLLM's ``prompt_logprobs``, the prompt's log-probs in verl's layout), receives new weights with :meth:`~TransformersServer.update_weights`, and
  accepts verl's control calls (sleep / wake_up / abort / kv-cache), which are no-ops here.
- :class:`TransformersReplica` — verl's ``RolloutReplica``: starts one server per replica next
  to the trainer's workers (hybrid mode). Registered with ``RolloutReplicaRegistry``.
- :class:`TransformersServerAdapter` — verl's ``BaseRollout`` inside each actor worker: after
  every optimizer step verl's naive checkpoint engine hands it the trainer's full tensors, which
  it ships to its replica's server through the Ray object store. Registered in the private
  ``verl.workers.rollout.base._ROLLOUT_REGISTRY`` dict (verl 0.9.1 has no public API for the
  worker-side class).

:func:`register` installs both names; :mod:`adapters.verl.plugin` calls it in every process
(the loaders import this module lazily, so nothing here is imported unless the backend is used).

verl 0.9.1 internals this relies on (``tests/verl/test_end_to_end.py`` fails when they change):
``RolloutReplica`` (``init_hybrid`` → ``launch_servers``, which must set ``servers``,
``_server_handle`` and ``_server_address``), the private ``_ROLLOUT_REGISTRY`` dict, ``BaseRollout``
and the naive checkpoint engine's call ``rollout.update_weights(per_tensor_param, peft_config=…,
base_sync_done=…, global_steps=…)`` from ``ActorRolloutRefWorker.update_weights``, the server calls
``LLMServerClient.generate`` and ``CheckpointEngineManager`` make (``generate``, ``sleep``,
``wake_up``, ``abort_all_requests``, ``resume_generation``, the kv-cache calls), ``TokenOutput``,
and the ``prompt_logprobs`` layout of ``vllm_rollout.utils.extract_prompt_logprobs``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

import torch

BACKEND = "transformers"
"""``actor_rollout_ref.rollout.name`` of this backend."""
SERVER_NAME_PREFIX = f"{BACKEND}_server"

logger = logging.getLogger(__name__)


def server_name(replica_rank: int) -> str:
    """Ray actor name of a replica's server (the worker-side adapter looks it up by name)."""
    return f"{SERVER_NAME_PREFIX}_{replica_rank}"


def max_new_tokens(prompt_len: int, *, prompt_length: int, response_length: int, max_model_len: int | None,
                   requested: int | None = None) -> int:
    """Token budget of one generate call, as verl's vLLM server computes it.

    ``min(requested or response_length, prompt_length + response_length − prompt_len)``, clamped to
    ``[1, max_model_len − prompt_len]``. Raises ``ValueError`` when the prompt leaves no room.
    """
    room = (max_model_len or prompt_length + response_length) - prompt_len
    if room < 1:
        raise ValueError(f"prompt of {prompt_len} tokens leaves no room to generate within "
                         f"max_model_len={max_model_len or prompt_length + response_length}")
    budget = requested if requested is not None else min(response_length, prompt_length + response_length - prompt_len)
    return max(1, min(int(budget), room))


def token_log_probs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits_t)[y_t]`` per position: shapes (T, V), (T,) → (T,).

    Raw log-probs (no temperature), as vLLM returns them by default (``logprobs_mode=raw_logprobs``).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, token_ids.long().unsqueeze(-1)).squeeze(-1)


def prompt_log_probs(logits: torch.Tensor, prompt_ids: torch.Tensor, k: int) -> tuple[list[list[float]], list[list[int]]]:
    """vLLM's ``prompt_logprobs`` in verl's layout (``extract_prompt_logprobs``).

    ``logits`` (L, V) are the model's outputs at the L prompt positions. Entry j (j < L−1) scores
    prompt token j+1 given tokens ≤ j: with ``k = 0`` it is ``[log p(x_{j+1})]`` and ids
    ``[x_{j+1}]``; with ``k > 0`` the top-k log-probs at position j and their ids, best first.
    A dummy ``[0.0]·max(k, 1)`` / ``[0]·max(k, 1)`` pads the last position, as verl does.
    """
    logp = torch.log_softmax(logits[:-1].float(), dim=-1)
    if k == 0:
        nxt = prompt_ids[1:].long()
        values, ids = logp.gather(-1, nxt.unsqueeze(-1)), nxt.unsqueeze(-1)
    else:
        values, ids = logp.topk(k, dim=-1)
    width = max(k, 1)
    return values.tolist() + [[0.0] * width], ids.tolist() + [[0] * width]


def _config_value(config: Any, key: str) -> Any:
    """``config.key`` of a dataclass or an OmegaConf node (verl hands replicas either), else None."""
    return config.get(key) if hasattr(config, "get") else getattr(config, key, None)


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids: the generation config's, else the tokenizer's eos."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = eos if isinstance(eos, list) else [eos]
    return [int(i) for i in ids if i is not None]


class TransformersServer:
    """Token-in/token-out generation server over one transformers model (a Ray actor).

    Args:
        config: verl's ``RolloutConfig`` (``prompt_length``, ``response_length``,
            ``max_model_len``, ``seed``).
        model_config: verl's ``HFModelConfig`` (``local_path`` holds the weights).
        replica_rank: this replica's rank (seeds the sampler with ``config.seed + rank``).
        device: ``"cpu"`` or ``"cuda"``; default: CUDA when visible, else the CPU.
    """

    def __init__(self, config: Any, model_config: Any, replica_rank: int, device: str | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config, self.replica_rank = config, replica_rank
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        path = _config_value(model_config, "local_path") or model_config.path
        dtype = torch.float32 if self.device.type == "cpu" else torch.bfloat16
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).to(self.device)
        self.model.eval()
        tokenizer_path = _config_value(model_config, "local_tokenizer_path") or _config_value(model_config, "tokenizer_path")
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or path, local_files_only=True)
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)
        self.global_steps: int | None = None
        self.weight_updates: list[dict[str, Any]] = []
        self.requests = 0
        self._lock = threading.Lock()  # one decode at a time; the actor stays responsive meanwhile
        seed = int(getattr(config, "seed", 0) or 0) + replica_rank
        self._generator = torch.Generator(device=self.device).manual_seed(seed)

    # -- generation ---------------------------------------------------------------------
    async def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any], request_id: str,
                       **_: Any) -> Any:
        """verl's ``generate`` contract: sample a continuation of ``prompt_ids``; returns ``TokenOutput``."""
        return await asyncio.to_thread(self._generate, list(prompt_ids), dict(sampling_params))

    def _generate(self, prompt_ids: list[int], params: dict[str, Any]) -> Any:
        from verl.workers.rollout.replica import TokenOutput

        requested = params.pop("max_tokens", params.pop("max_new_tokens", None))
        budget = max_new_tokens(len(prompt_ids), prompt_length=self.config.prompt_length,
                                response_length=self.config.response_length,
                                max_model_len=self.config.max_model_len, requested=requested)
        temperature = float(params.get("temperature", 1.0))
        top_p, top_k = float(params.get("top_p", 1.0)), int(params.get("top_k", -1))
        num_prompt_logprobs = params.get("prompt_logprobs")
        extra: dict[str, Any] = {"global_steps": self.global_steps}
        with self._lock, torch.no_grad():
            ids, logits, prompt_logits = self._decode(prompt_ids, budget, temperature, top_p, top_k,
                                                      keep_prompt_logits=num_prompt_logprobs is not None)
            self.requests += 1
        if prompt_logits is not None:
            extra["prompt_logprobs"], extra["prompt_ids"] = prompt_log_probs(
                prompt_logits, torch.tensor(prompt_ids), int(num_prompt_logprobs))
        log_probs = token_log_probs(logits, torch.tensor(ids)).tolist() if params.get("logprobs") else None
        return TokenOutput(token_ids=ids, log_probs=log_probs, stop_reason="completed", extra_fields=extra)

    def _decode(self, prompt_ids: list[int], budget: int, temperature: float, top_p: float, top_k: int, *,
                keep_prompt_logits: bool = False) -> tuple[list[int], torch.Tensor, torch.Tensor | None]:
        """Sample up to ``budget`` tokens with a KV cache.

        Returns the sampled ids, their raw logits (T, V) and, with ``keep_prompt_logits``, the
        logits at every prompt position (L, V) (else ``None``; the prefill then keeps only the last).
        """
        from transformers import DynamicCache

        cache = DynamicCache()
        step_input = torch.tensor([prompt_ids], device=self.device)
        ids: list[int] = []
        rows: list[torch.Tensor] = []
        prompt_logits = None
        for step in range(budget):
            keep = 0 if (step == 0 and keep_prompt_logits) else 1  # 0: every position
            out = self.model(input_ids=step_input, past_key_values=cache, use_cache=True, logits_to_keep=keep)
            cache = out.past_key_values
            if step == 0 and keep_prompt_logits:
                prompt_logits = out.logits[0].float()
            logits = out.logits[0, -1].float()
            token = self._sample(logits, temperature, top_p, top_k)
            ids.append(token)
            rows.append(logits)
            if token in self.stop_ids:
                break
            step_input = torch.tensor([[token]], device=self.device)
        return ids, torch.stack(rows), prompt_logits

    def _sample(self, logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> int:
        if temperature <= 0:
            return int(logits.argmax())
        scores = logits / temperature
        if 0 < top_k < scores.numel():
            kth = torch.topk(scores, top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            drop = sorted_p.cumsum(0) - sorted_p > top_p
            probs = probs.scatter(0, order, sorted_p.masked_fill(drop, 0.0))
        return int(torch.multinomial(probs / probs.sum(), 1, generator=self._generator))

    # -- weights ------------------------------------------------------------------------
    def update_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: int | None = None) -> dict[str, int]:
        """Load the trainer's weights (full tensors by HF name); returns loaded / missing / unexpected counts.

        Prints one line per update (verl's console shows actor stdout), which is how a run's log
        proves that the rollout sampled with the weights of the latest step.
        """
        with self._lock:
            state = {k: v.to(self.device) for k, v in named_tensors.items()}
            result = self.model.load_state_dict(state, strict=False)
            tied = set(getattr(self.model, "_tied_weights_keys", None) or [])
            missing = [k for k in result.missing_keys if k not in tied]
            if global_steps is not None:
                self.global_steps = int(global_steps)
        record = {"global_steps": self.global_steps, "loaded": len(state), "missing": len(missing),
                  "unexpected": len(result.unexpected_keys)}
        self.weight_updates.append(record)
        print(f"[{BACKEND} rollout] replica {self.replica_rank}: weights for global step {self.global_steps} "
              f"loaded {record['loaded']}, missing {record['missing']}, unexpected {record['unexpected']}", flush=True)
        return record

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = int(global_steps)

    def stats(self) -> dict[str, Any]:
        """What the server has done: requests served, weight updates, current weight version."""
        return {"requests": self.requests, "weight_updates": list(self.weight_updates), "global_steps": self.global_steps}

    # -- verl's control calls: nothing to free or pause in this backend ------------------
    async def wake_up(self, tags: list[str] | None = None) -> None: ...
    async def sleep(self) -> None: ...
    async def clear_kv_cache(self) -> None: ...
    async def release_kv_cache(self) -> None: ...
    async def resume_kv_cache(self) -> None: ...
    async def wait_for_requests_to_drain(self) -> None: ...
    async def resume_generation(self) -> None: ...
    async def start_profile(self, **_: Any) -> None: ...
    async def stop_profile(self) -> None: ...

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True) -> dict[str, Any]:
        return {"aborted": False, "request_id": request_id}


def _replica_class() -> type:
    """Build :class:`TransformersReplica` on first use (its base class needs verl and Ray)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from verl.workers.rollout.replica import RolloutMode, RolloutReplica

    class TransformersReplica(RolloutReplica):
        """One :class:`TransformersServer` per replica, on the node of the replica's first worker."""

        async def launch_servers(self) -> None:
            if self.rollout_mode != RolloutMode.HYBRID:
                raise NotImplementedError(
                    f"rollout.name={BACKEND!r} runs only in hybrid mode (trainer and rollout on the same "
                    f"workers); got {self.rollout_mode}. Use vllm or sglang for standalone/colocated servers.")
            if self.world_size != 1:
                raise ValueError(f"rollout.name={BACKEND!r} serves one model copy per replica: set "
                                 f"rollout.tensor_model_parallel_size=1 (got a replica world size of {self.world_size})")
            node_id = await self.workers[0].__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id())
            server = ray.remote(TransformersServer).options(
                name=server_name(self.replica_rank), num_cpus=0, max_concurrency=self.max_concurrency,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            ).remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank,
                     device=_server_device())
            await server.stats.remote()  # surface a failed model load here, not at the first request
            self.servers = [server]
            self._server_handle = server
            self._server_address = f"{BACKEND}://replica-{self.replica_rank}"

    return TransformersReplica


def _server_device() -> str:
    from verl.utils.device import get_device_name

    return "cpu" if get_device_name() == "cpu" else "cuda"


def _full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
    return full.detach().to("cpu").clone()


def collect_weights(weights: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Drain verl's ``(name, tensor)`` generator into CPU copies (every rank must drain it: FSDP
    gathers each tensor collectively)."""
    return {name: _full_tensor(tensor) for name, tensor in weights}


def _adapter_class() -> type:
    import ray
    from verl.workers.rollout.base import BaseRollout

    class TransformersServerAdapter(BaseRollout):
        """Worker side of the backend: forwards the trainer's weights to the replica's server."""

        def __init__(self, config: Any, model_config: Any, device_mesh: Any, *args: Any,
                     replica_rank: int = -1, **kwargs: Any) -> None:
            super().__init__(config, model_config, device_mesh)
            rank = int(os.environ.get("RANK", 0))
            per_replica = (self.config.tensor_model_parallel_size * self.config.data_parallel_size
                           * self.config.pipeline_model_parallel_size)
            self.replica_rank = rank // per_replica if replica_rank == -1 else replica_rank
            self._has_server = rank % per_replica == 0
            self._server = None

        def _handle(self) -> Any:
            if self._server is None:
                self._server = ray.get_actor(server_name(self.replica_rank))
            return self._server

        async def resume(self, tags: list[str]) -> None:
            if self._has_server:
                await self._handle().wake_up.remote(tags=tags)

        async def release(self) -> None:
            if self._has_server:
                await self._handle().sleep.remote()

        async def update_weights(self, weights: Any, global_steps: int | None = None,
                                 wire_format: str = "named_tensors", **kwargs: Any) -> None:
            if wire_format != "named_tensors":
                raise ValueError(f"rollout.name={BACKEND!r} takes full tensors (checkpoint_engine.backend=naive); "
                                 f"got wire_format={wire_format!r}")
            if kwargs.get("peft_config") is not None:
                raise NotImplementedError(f"rollout.name={BACKEND!r} does not take LoRA adapters; merge them "
                                          "(actor_rollout_ref.model.lora.merge=true)")
            state = collect_weights(weights)
            if self._has_server:
                await self._handle().update_weights.remote(state, global_steps)

    return TransformersServerAdapter


_CLASSES: dict[str, type] = {}


def __getattr__(name: str) -> type:
    """``TransformersReplica`` / ``TransformersServerAdapter`` are built lazily (they subclass verl)."""
    builders = {"TransformersReplica": _replica_class, "TransformersServerAdapter": _adapter_class}
    if name not in builders:
        raise AttributeError(name)
    if name not in _CLASSES:
        _CLASSES[name] = builders[name]()
    return _CLASSES[name]


def register() -> None:
    """Make ``rollout.name=transformers`` known to verl: the replica (public registry) and the
    worker-side adapter (``verl.workers.rollout.base._ROLLOUT_REGISTRY``, private in 0.9.1)."""
    from verl.workers.rollout import base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(BACKEND, lambda: __getattr__("TransformersReplica"))
    base._ROLLOUT_REGISTRY[(BACKEND, "async")] = f"{__name__}.TransformersServerAdapter"

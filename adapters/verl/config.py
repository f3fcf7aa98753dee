"""Extra verl config keys as ``_target_`` dataclass subclasses (verl rejects unknown keys).

verl 0.9.1 turns the ``algorithm`` and ``actor_rollout_ref.actor.policy_loss`` sections into
dataclasses through hydra ``_target_``; an unknown key raises ``TypeError`` there. Our configs
therefore point those ``_target_`` entries at the subclasses below:

- ``algorithm._target_: adapters.verl.config.BenchAlgoConfig`` adds ``algorithm.method`` and the
  driver-side sections ``algorithm.sgcd`` and ``algorithm.sdpo``;
- ``actor_rollout_ref.actor.policy_loss._target_: adapters.verl.config.SDPOPolicyLossConfig``
  adds ``sdpo_is_clip`` and ``sdpo_loss_agg_mode`` for the worker-side SDPO loss.

Each section validates on construction (``ValueError`` naming the key, the value and what is
allowed). The settings mirror ``algorithms.config`` (SGCDConfig, SDPOConfig); see
:meth:`SGCDSection.credit_kwargs` for the hand-over to ``algorithms.sgcd``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from verl.base_config import BaseConfig
from verl.trainer.config import AlgoConfig
from verl.workers.config.actor import PolicyLossConfig

from algorithms.registry import METHODS
from sgcd_common import did_you_mean


def verl_methods() -> tuple[str, ...]:
    """Names of the registered methods that have a verl trainer (``algorithms.registry.METHODS``)."""
    return tuple(name for name, spec in METHODS.items() if spec.verl is not None)


DIVERGENCE_ESTIMATORS: tuple[str, ...] = ("exact", "shared_topk", "k3_sampled_token")
SUMMARIZERS: tuple[str, ...] = ("offline", "llm")
SDPO_DIVERGENCES: tuple[str, ...] = ("topk", "sampled_token")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not allowed. Choose one of: {', '.join(allowed)}."
                         f"{did_you_mean(value, allowed)}")


@dataclass
class SGCDSection(BaseConfig):
    """``algorithm.sgcd``: SGCD credit weights computed on the driver (SPEC §3.5).

    divergence_estimator: how D_t = KL(π_old(·|s_t) ‖ π_T(·|s_t, ref)) is computed
        (:mod:`adapters.verl.credit`). ``"exact"`` (default, FSDP): the full-vocabulary KL of the
        local trainer, from the actor's logits of both contexts side by side (verl's top-k logits
        hook, :func:`adapters.verl.losses.pair_divergence`). ``"shared_topk"``: the rollout server scores the
        student's and the teacher's context with ``prompt_logprobs=divergence_topk`` and D̂_t is the
        reverse KL over "the tokens in both top-k lists + one tail bin"
        (``algorithms.topk.reverse_kl_shared_topk``), a lower bound of the local trainer's
        full-vocabulary KL. ``"k3_sampled_token"``: ``exp(d) − d − 1`` at the sampled token from the
        actor's ``compute_log_prob`` (unbiased, one sample per token, so much noisier).
    divergence_topk: k of ``shared_topk``. Default 20, vLLM's default ``max_logprobs``; a larger k
        needs ``actor_rollout_ref.rollout.engine_kwargs.vllm.max_logprobs >= k``. Teacher sequences
        longer than the rollout's ``max_model_len`` are not scored (w = 1 there,
        ``sgcd/frac_rows_unscored``): leave room for the credit reference in ``max_model_len``.
    gamma: entropy mix γ in s_t = D_t + γ·H_t (H_t is verl's old-policy entropy). Default 0 (ours).
    beta: sharpness β in w_t = clip(1 + β(z_t − 1), w_min, w_max). Default 1 (ours).
    w_min, w_max: weight bounds. Defaults 0.5, 2.0 (ours).
    success_threshold: a sibling with reward ≥ this counts as a success. Default 1.0 (ours).
    summarizer: ``"offline"`` (the stand-in ``algorithms.credit_reference.offline_contrast_reference``)
        or ``"llm"`` (``adapters.llm.LLMSummarizer`` over an OpenAI-compatible endpoint).
    summarizer_model, summarizer_base_url, summarizer_api_key_env: the endpoint for ``"llm"``;
        the key is read from that environment variable on the driver, never stored in config.
    """

    divergence_estimator: str = "exact"
    divergence_topk: int = 20
    gamma: float = 0.0
    beta: float = 1.0
    w_min: float = 0.5
    w_max: float = 2.0
    success_threshold: float = 1.0
    summarizer: str = "offline"
    summarizer_model: str | None = None
    summarizer_base_url: str | None = None
    summarizer_api_key_env: str = "OPENAI_API_KEY"

    def __post_init__(self) -> None:
        _choice("algorithm.sgcd.divergence_estimator", self.divergence_estimator, DIVERGENCE_ESTIMATORS)
        _choice("algorithm.sgcd.summarizer", self.summarizer, SUMMARIZERS)
        if isinstance(self.divergence_topk, bool) or int(self.divergence_topk) != self.divergence_topk \
                or self.divergence_topk < 1:
            raise ValueError(f"algorithm.sgcd.divergence_topk must be an integer >= 1, got {self.divergence_topk!r}")
        if not (0.0 < self.w_min <= 1.0 <= self.w_max):
            raise ValueError(
                f"algorithm.sgcd needs 0 < w_min <= 1 <= w_max, got w_min={self.w_min}, w_max={self.w_max}"
            )
        if self.beta < 0 or self.gamma < 0:
            raise ValueError(f"algorithm.sgcd.beta and .gamma must be >= 0, got beta={self.beta}, gamma={self.gamma}")
        if self.summarizer == "llm" and not self.summarizer_model:
            raise ValueError("algorithm.sgcd.summarizer='llm' needs algorithm.sgcd.summarizer_model (got None)")
        self.to_algorithms()  # the shared validation of algorithms.config.SGCDConfig

    def to_algorithms(self):
        """The same settings as ``algorithms.config.SGCDConfig`` (teacher = current weights, π_old)."""
        from algorithms.config import SGCDConfig

        return SGCDConfig(gamma=self.gamma, beta=self.beta, w_min=self.w_min, w_max=self.w_max, teacher="current")

    def credit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``algorithms.sgcd.credit_weights``."""
        return {"beta": self.beta, "w_min": self.w_min, "w_max": self.w_max}


@dataclass
class SDPOSection(BaseConfig):
    """``algorithm.sdpo``: how the driver builds SDPO's reprompted teacher context (SPEC §3.6).

    success_threshold: a sibling with reward ≥ this is a demonstration. Default 1.0 (paper).
    use_feedback: when no sibling succeeded, reprompt with the environment's feedback text
        (``reward_extra_info["feedback"]``) if there is one. Default True (reference code).
    teacher: ``"pi_old"`` — the teacher is the current policy (π_old, the weights that sampled the
        batch). The reference code's EMA teacher (rate 0.05) needs a second weight copy that follows
        the actor inside the worker; verl 0.9.1 has none with an update path (its reference worker
        is frozen), so this is a documented gap (``benchmarks/sdpo_teacher.py`` measures it).
    divergence: ``"topk"`` (default, FSDP) — lasgroup/SDPO's generalised JSD (α =
        ``policy_loss.sdpo_alpha``) over the student's top-k ids at π_old plus a tail bin, the
        teacher's log-probs at those ids computed by the actor beside the student's
        (:func:`adapters.verl.losses.pair_topk_bins`) and the student's side recomputed with
        gradient in the update; ``"sampled_token"`` — the reverse-KL score-function form at the
        sampled token (``algorithms.sdpo.sdpo_loss_sampled_token``, any engine).
    topk: k of ``topk``. Default 100 (SDPO reference code).
    """

    success_threshold: float = 1.0
    use_feedback: bool = True
    teacher: str = "pi_old"
    divergence: str = "topk"
    topk: int = 100

    def __post_init__(self) -> None:
        _choice("algorithm.sdpo.teacher", self.teacher, ("pi_old",))
        _choice("algorithm.sdpo.divergence", self.divergence, SDPO_DIVERGENCES)
        if isinstance(self.topk, bool) or int(self.topk) != self.topk or self.topk < 1:
            raise ValueError(f"algorithm.sdpo.topk must be an integer >= 1, got {self.topk!r}")
        self.to_algorithms()

    def to_algorithms(self):
        """The matching ``algorithms.config.SDPOConfig`` (shared validation of the common fields)."""
        from algorithms.config import SDPOConfig

        return SDPOConfig(success_threshold=self.success_threshold, include_feedback=self.use_feedback)


@dataclass
class BenchAlgoConfig(AlgoConfig):
    """verl's ``AlgoConfig`` plus ``method`` (grpo | sgcd | sdpo) and the two driver sections."""

    method: str = "grpo"
    sgcd: SGCDSection = field(default_factory=SGCDSection)
    sdpo: SDPOSection = field(default_factory=SDPOSection)

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        _choice("algorithm.method", self.method, verl_methods())
        if self.method != "grpo" and self.adv_estimator != "grpo":
            raise ValueError(
                f"algorithm.method={self.method!r} builds on GRPO advantages; set algorithm.adv_estimator=grpo "
                f"(got {self.adv_estimator!r})"
            )


@dataclass
class SDPOPolicyLossConfig(PolicyLossConfig):
    """verl's ``PolicyLossConfig`` plus the SDPO loss settings (worker side).

    sdpo_is_clip: cap on the per-token importance ratio π_θ/π_old. Default 2 (SDPO reference code).
    sdpo_alpha: α of the generalised JSD of ``algorithm.sdpo.divergence=shared_topk``: 0 forward
        KL, 1 reverse KL, 0.5 JSD. Default 0.5 (SDPO reference code, tool-use runs).
    """

    sdpo_is_clip: float = 2.0
    sdpo_alpha: float = 0.5

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if not self.sdpo_is_clip > 0:
            raise ValueError(f"policy_loss.sdpo_is_clip must be > 0, got {self.sdpo_is_clip}")
        if not 0.0 <= self.sdpo_alpha <= 1.0:
            raise ValueError(f"policy_loss.sdpo_alpha must be in [0, 1], got {self.sdpo_alpha}")

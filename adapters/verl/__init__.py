"""sgcd-bench's verl 0.9.1 plugin: GRPO+KL, SGCD and SDPO on verl's FSDP and Megatron engines.

verl is an optional dependency (``scripts/setup_verl.sh`` builds ``.venv-verl``); importing
:mod:`adapters.verl` itself never imports verl, so the rest of the toolkit works without it.

Modules (each imports verl only when used):

- :mod:`adapters.verl.plugin` — the ``verl.plugins`` entry-point target. Importing it registers
  the SDPO policy loss in verl's ``POLICY_LOSS_REGISTRY``; :func:`~adapters.verl.plugin.check_registered`
  fails loudly when that did not happen (verl logs plugin import errors only at debug level).
- :mod:`adapters.verl.credit` — SGCD on the driver: sampled-token divergence features →
  ``algorithms.sgcd`` credit weights → ``advantages ← w·A`` written into a ``DataProto``.
- :mod:`adapters.verl.losses` — the SDPO loss in verl's policy-loss signature and the
  engine-level loss function that feeds it the teacher log-probs.
- :mod:`adapters.verl.config` — ``_target_`` dataclass subclasses that carry our extra keys.
- :mod:`adapters.verl.teacher` — teacher contexts from finished episodes (SGCD credit reference,
  SDPO reprompt), pure and CPU-tested.
- :mod:`adapters.verl.trainer` — ``PPOTrainerSync`` subclasses (teacher scoring, weights) and
  the Ray task runner that installs them.
- :mod:`adapters.verl.agent_loop` — the multi-turn τ³-airline agent loop over our Gymnasium env.
- :mod:`adapters.verl.launch` — ``python -m adapters.verl.launch --config-name sgcd_fsdp ...``.
- :mod:`adapters.verl.dataset` — ``python -m adapters.verl.dataset OUT_DIR [--appworld SPLITS]`` (τ³ / AppWorld task parquet files).
- :mod:`adapters.verl.transformers_rollout` — rollout backend ``rollout.name=transformers``
  (a transformers model behind verl's token-in/token-out server API; CPU or one GPU, no vLLM).
- :mod:`adapters.verl.cpu_mode` — verl on a CPU (platform, FSDP engines, gloo process group);
  loaded only with ``VERL_PLATFORM=cpu``.
- :mod:`adapters.verl.cpu_run` — ``python -m adapters.verl.cpu_run {grpo,sgcd,sdpo}``: a few
  steps of verl's real trainer on a CPU with a tiny random model (what CI runs).
- :mod:`adapters.verl.replay_stand_in` — the CI-only contrast stand-in agent loop (every other
  sibling replays the reference actions), so a random model's groups have a success to learn from.

Configs: ``adapters/verl/configs/{grpo,sgcd,sdpo}_{fsdp,megatron}.yaml``. See README.md there.
"""

VERL_VERSION = "0.9.1"
"""The verl release this plugin is written and tested against (pinned exactly)."""

__all__ = ["VERL_VERSION"]

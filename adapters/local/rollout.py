"""Multi-turn rollouts of a transformers causal LM through sgcd_envs tool-use environments.

All episodes of a batch (G siblings × B tasks) advance turn by turn in lockstep: each turn
the active episodes are sampled together, in one batch, on top of the shared system-prompt
prefix whose KV cache is computed once per call and expanded to the batch (never recomputed
per sibling), and each episode's cache is kept from turn to turn (:class:`BatchCache`), so a
turn feeds only what the episode does not hold yet: the env's reply and the generation prompt.
Every episode keeps the model's exact generated token ids and a loss mask that
is 1 on generated tokens and 0 on everything the environment or the user wrote.

When re-tokenising the rendered conversation does not extend the tokens we already hold (a
re-tokenisation drift, the most reported bug class in agent-RL trainers), the episode keeps
its exact tokens and records the turn and the first differing token in
``Episode.retokenization_mismatches`` (template drift in ``template_mismatches``) instead of
masking or crashing silently.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sgcd_envs.outcome import EpisodeOutcome, episode_outcome

from .prompting import ChatRenderer


@dataclass
class Episode:
    """One finished (or cut) multi-turn episode of one task."""

    task_id: str
    group: int
    suffix_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The conversation as the policy saw it (assistant turns are the raw generated text)."""
    env_messages: list[dict[str, Any]] = field(default_factory=list)
    """The env's own record (assistant tool calls parsed, tool results with call ids)."""
    reward: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    generated_tokens: int = 0
    turns: int = 0
    done: bool = False
    retokenization_mismatches: list[tuple[int, int]] = field(default_factory=list)
    """(turn, first differing token) where re-tokenising the rendered conversation does not
    reproduce the held tokens (e.g. a sampled non-canonical split); the held tokens are kept."""
    template_mismatches: list[tuple[int, int]] = field(default_factory=list)
    rendered_suffix: str = field(default="", repr=False)
    """The chat-template text that ``suffix_ids`` encode (kept in step with them)."""
    """(turn, first differing character) where the chat template re-rendered an earlier turn."""

    @property
    def outcome(self) -> EpisodeOutcome:
        """How the episode ended, read from the env's final info (a cut episode: reward 0)."""
        return episode_outcome(self.info, reward=self.reward)

    @property
    def category(self) -> str:
        return self.outcome.category or ""

    @property
    def write_calls(self) -> int:
        return self.outcome.write_calls

    @property
    def termination(self) -> str:
        return self.outcome.termination


def cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the KV-cache argument of ``model.forward`` (``cache`` from transformers 5.2x,
    ``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(out):
    """The KV cache of a forward's output (``cache`` from transformers 5.2x)."""
    return out.cache if "cache" in out.keys() else out.past_key_values


def prefix_cache(model: torch.nn.Module, prefix_ids: Sequence[int], *, grad: bool = False):
    """Run the shared prefix once (batch 1) and return its KV cache.

    With ``grad=True`` the cache stays in the autograd graph, so a loss on the suffix
    back-propagates through the prefix exactly as if each sequence had been run in full.
    """
    device = next(model.parameters()).device
    ids = torch.tensor([list(prefix_ids)], device=device)
    with torch.set_grad_enabled(grad):
        out = model(input_ids=ids, use_cache=True)
    return output_cache(out)


def map_cache(cache, fn: Callable[[torch.Tensor], torch.Tensor], into=None):
    """A cache whose every layer's keys and values are ``fn`` of ``cache``'s (``cache`` is left
    untouched); filled into ``into`` (an empty cache of some subclass) or a new DynamicCache."""
    from transformers import DynamicCache

    out = DynamicCache() if into is None else into
    for layer_idx, layer in enumerate(cache.layers):
        DynamicCache.update(out, fn(layer.keys), fn(layer.values), layer_idx)  # the base update stores
    return out


def _expand_cache(cache, n: int, into=None):
    """The (one-row) prefix cache held ``n`` times."""
    return map_cache(cache, lambda t: t.expand(n, *t.shape[1:]), into)


@dataclass
class BatchCache:
    """The KV cache of a batch of rows (one per episode) on top of the shared prefix, kept from
    turn to turn so that each turn feeds only the tokens the row does not hold yet.

    Row ``r`` attends to the columns where ``attention[r] == 1``; the gaps (right-alignment
    padding, steps after the row stopped) are masked out, and positions count attended columns
    only, so every row sees exactly ``prefix + its own tokens``.
    """

    kv: Any
    attention: torch.Tensor
    """(rows, columns) long: 1 where the row attends."""
    generated_fed: list[int] = field(default_factory=list)
    """Per row, after :func:`extend_and_sample`: how many of the tokens it generated are in
    ``kv`` (all but the last sampled one, which was never fed; all if the row stopped early)."""

    @classmethod
    def from_prefix(cls, cache, prefix_len: int, rows: int) -> BatchCache:
        device = cache.layers[0].keys.device
        return cls(_expand_cache(cache, rows), torch.ones((rows, prefix_len), dtype=torch.long, device=device))

    def select(self, rows: Sequence[int]) -> BatchCache:
        """A new cache with only ``rows`` (in that order), dropping the columns none of them
        attends to (the gaps the dropped rows or the padding left)."""
        device = self.attention.device
        index = torch.tensor(list(rows), dtype=torch.long, device=device)
        attention = self.attention.index_select(0, index)
        keep = torch.nonzero(attention.any(0)).flatten()
        kv = map_cache(self.kv, lambda t: t.index_select(0, index).index_select(2, keep))
        fed = [self.generated_fed[r] for r in rows] if self.generated_fed else []
        return BatchCache(kv, attention.index_select(1, keep), fed)


@torch.no_grad()
def extend_and_sample(
    model: torch.nn.Module,
    state: BatchCache,
    new_tokens: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
    temperature: float | Sequence[float] = 1.0,
    generator: torch.Generator | None = None,
    row_generators: Sequence[torch.Generator | None] | None = None,
) -> list[list[int]]:
    """Feed each row its ``new_tokens`` (≥ 1 each) on top of what ``state`` holds, then sample
    one continuation per row; ``state`` is updated in place to hold everything fed.

    New tokens of different lengths are right-aligned; the gap is masked out of attention and
    positions are counted over attended tokens only. Sampling is ancestral at ``temperature``,
    one for all rows or one per row (0 = greedy); only the sampled rows draw from ``generator``,
    so greedy rows riding along leave the others' random numbers as they were (the batch's shape
    can still change a logit's rounding); a row with its own generator in ``row_generators``
    draws from that one instead (:func:`row_sampler`). A row stops after emitting
    any of ``stop_ids`` (which is kept) or ``max_new_tokens`` tokens. Once a row has stopped, the
    steps it idles through are masked.
    """
    if any(len(t) == 0 for t in new_tokens):
        raise ValueError("every row needs at least one new token to sample from")
    device = next(model.parameters()).device
    n = len(new_tokens)
    pick = row_sampler(temperature, n, device=device, generator=generator, row_generators=row_generators)
    width = max(len(t) for t in new_tokens)
    ids = torch.full((n, width), pad_id, dtype=torch.long, device=device)
    new_attn = torch.zeros((n, width), dtype=torch.long, device=device)
    for i, t in enumerate(new_tokens):
        ids[i, width - len(t):] = torch.tensor(list(t), device=device)
        new_attn[i, width - len(t):] = 1
    attn = torch.cat([state.attention, new_attn], dim=1)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)[:, -width:]
    key = cache_kwarg(model)
    out = model(input_ids=ids, attention_mask=attn, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{key: state.kv})
    stop = torch.tensor(list(stop_ids), device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    fed = torch.zeros(n, dtype=torch.long, device=device)
    generated: list[list[int]] = [[] for _ in range(n)]
    next_pos = positions[:, -1:] + 1
    for step in range(max_new_tokens):
        token = pick(out.logits[:, -1, :].float())
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        live = ~finished  # rows for which `token` is a real token (the stop token included)
        for i, (t, alive) in enumerate(zip(token.tolist(), live.tolist())):  # two transfers a step
            if alive:
                generated[i].append(t)
        finished |= torch.isin(token, stop)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        attn = torch.cat([attn, live.long()[:, None]], dim=1)
        out = model(input_ids=token[:, None], attention_mask=attn, position_ids=next_pos,
                    use_cache=True, **{key: output_cache(out)})
        next_pos = next_pos + live.long()[:, None]
        fed += live.long()
    state.kv = output_cache(out)
    state.attention = attn
    state.generated_fed = fed.tolist()
    return generated


def row_sampler(temperature: float | Sequence[float], rows: int, *, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None,
                row_generators: Sequence[torch.Generator | None] | None = None,
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The next-token rule of ``rows`` rows: logits (rows, vocab) → tokens (rows,).

    Row r draws ``y ~ softmax(z_r / τ_r)`` when τ_r > 0 and takes ``argmax z_r`` when τ_r = 0;
    ``temperature`` is one τ for every row or one per row. The sampled rows draw from
    ``generator``, in row order (one ``multinomial`` call), except those with their own generator
    in ``row_generators`` (one entry per row, None = the shared one): such a row draws
    ``u ~ U(0, 1]`` from it and takes the inverse CDF, ``y = min{i : Σ_{k≤i} p_k ≥ u}``, one
    draw per call whatever the other rows do. With a seeded generator this is a common random
    number: a slightly different ``p`` keeps ``y`` unless ``u`` falls near a boundary it moved."""
    temps = [float(temperature)] * rows if isinstance(temperature, (int, float)) else [float(t) for t in temperature]
    if len(temps) != rows:
        raise ValueError(f"{len(temps)} temperatures for {rows} rows")
    if any(t < 0 or t != t for t in temps):
        raise ValueError(f"temperatures must be >= 0 (0 = greedy), got {temps}")
    own = list(row_generators) if row_generators is not None else [None] * rows
    if len(own) != rows:
        raise ValueError(f"{len(own)} row generators for {rows} rows")
    shared = [r for r, t in enumerate(temps) if t > 0 and own[r] is None]
    inverse = [r for r, t in enumerate(temps) if t > 0 and own[r] is not None]
    if not shared and not inverse:
        return lambda logits: logits.argmax(-1)
    if len(shared) == rows and len(set(temps)) == 1:  # every row sampled at one temperature
        tau = temps[0]
        return lambda logits: torch.multinomial(torch.softmax(logits / tau, dim=-1), 1,
                                                generator=generator).squeeze(1)
    shared_index = torch.tensor(shared, dtype=torch.long, device=device)
    shared_taus = torch.tensor([temps[r] for r in shared], device=device)[:, None]
    inverse_index = torch.tensor(inverse, dtype=torch.long, device=device)
    inverse_taus = torch.tensor([temps[r] for r in inverse], device=device)[:, None]
    inverse_gens = [own[r] for r in inverse]

    def pick(logits: torch.Tensor) -> torch.Tensor:
        token = logits.argmax(-1)
        if shared:
            probs = torch.softmax(logits.index_select(0, shared_index) / shared_taus, dim=-1)
            token = token.index_copy(0, shared_index, torch.multinomial(probs, 1, generator=generator).squeeze(1))
        if inverse:
            cdf = torch.softmax(logits.index_select(0, inverse_index) / inverse_taus, dim=-1).cumsum(-1)
            u = 1.0 - torch.stack([torch.rand((), generator=g, device=device) for g in inverse_gens])  # (0, 1]
            drawn = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1).clamp(max=logits.shape[-1] - 1)
            token = token.index_copy(0, inverse_index, drawn)
        return token

    return pick


@dataclass(frozen=True)
class RolloutProgress:
    """Where a rollout is: episodes ended (finished or, at the end, cut) of all, the lockstep turn."""

    done: int
    total: int
    turn: int
    max_turns: int
    elapsed_s: float


@dataclass
class RolloutEngine:
    """Runs G siblings of each task through fresh environments, batched turn by turn."""

    model: torch.nn.Module
    tokenizer: Any
    renderer: ChatRenderer
    make_env: Callable[[], Any]
    max_new_tokens: int = 64
    max_turns: int = 4
    temperature: float = 1.0
    batch_groups: int | None = None
    """Groups (tasks × their G siblings) sampled together in one lockstep batch; the batches run
    one after another. Bounds the KV cache (rows × context); None = all groups at once."""
    on_progress: Callable[[RolloutProgress], None] | None = None
    """Called after every lockstep turn and when a rollout ends (for progress displays)."""
    keep_turn_cache: bool = True
    """Keep each episode's KV cache from turn to turn and feed only its new tokens (the last
    sampled token, the env's reply, the next generation prompt). ``False`` re-feeds the whole
    suffix every turn: the same tokens at a cost that grows with the square of the turns."""
    decoder: str = "auto"
    """How turns are sampled: ``"eager"`` (:func:`extend_and_sample`, a growing DynamicCache: the
    reference), ``"static"`` (:mod:`.static_decode`: a preallocated cache and a fixed-shape decode
    step, captured as a CUDA graph on CUDA) or ``"auto"`` (static on CUDA when the model allows
    it, eager elsewhere). The same token ids either way; :attr:`decode_path` names the choice."""

    def __post_init__(self) -> None:
        if self.batch_groups is not None and (not isinstance(self.batch_groups, int) or self.batch_groups < 1):
            raise ValueError(f"RolloutEngine.batch_groups must be None or >= 1, got {self.batch_groups!r}")
        eos = self.tokenizer.eos_token_id
        self.stop_ids = [eos] if isinstance(eos, int) else list(eos)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]
        if self.decoder not in DECODERS:
            raise ValueError(f"RolloutEngine.decoder must be one of {', '.join(map(repr, DECODERS))}, "
                             f"got {self.decoder!r}")
        self._static: Any = None  # the StaticDecoder, made on first use

    @property
    def decode_path(self) -> str:
        """What samples the turns (:func:`decode_path`; once the static decoder has run, its own
        name, which says whether the CUDA-graph capture worked)."""
        if self._static is not None and self._static.model is self.model:
            return self._static.name
        return decode_path(self.model, self.decoder)

    def _static_decoder(self):
        """The static decoder when :func:`decode_path` picks it for this model, else None."""
        if self._static is not None and self._static.model is self.model:
            return self._static
        if not decode_path(self.model, self.decoder).startswith("static"):  # raises for an unfit "static"
            return None
        from .static_decode import StaticDecoder

        self._static = StaticDecoder(self.model)
        return self._static

    def run(self, task_ids: Sequence[str], group_size: int, *, seed: int) -> tuple[list[Episode], dict[str, float]]:
        """Roll out ``group_size`` siblings of every task; episodes come back grouped by task."""
        episodes, _, info = self.run_with_probe(task_ids, group_size, (), seed=seed)
        return episodes, info

    def run_with_probe(self, task_ids: Sequence[str], group_size: int, probe_task_ids: Sequence[str], *,
                       seed: int, probe_seed: int = 0, probe_samples: int = 0
                       ) -> tuple[list[Episode], list[Episode], dict[str, float]]:
        """:meth:`run`, plus probe episodes of ``probe_task_ids`` riding in the first lockstep
        batch (the train probe): on a host-bound decoder a batch costs its decode steps, not its
        rows, so the riders come almost free. Returns (sampled episodes grouped by task, probe
        episodes in task order, statistics of the sampled episodes; ``probe_tokens`` apart).

        ``probe_samples`` = 0 plays each probe task once, greedily; K > 0 plays it K times at
        the rollout temperature, sample k of task j drawing from its own generators seeded by
        (``probe_seed``, j, k, turn) alone (:func:`episode_seed`, :func:`turn_seed`), never from
        the rollout's. The probe episode (j, k) is reset with the env seed that :meth:`run` gives sibling k of group j
        under ``seed=probe_seed``, so with a fixed ``probe_seed`` it is the same episode, with the
        same random numbers, at every call: its outcome changes only with the policy (common
        random numbers, :func:`row_sampler`)."""
        if probe_samples < 0:
            raise ValueError(f"probe_samples must be >= 0 (0 = greedy), got {probe_samples}")
        started = time.perf_counter()
        generator = torch.Generator(device="cpu").manual_seed(seed)
        cache = prefix_cache(self.model, self.renderer.prefix_ids)
        episodes: list[Episode] = []
        envs = []
        for g, task_id in enumerate(task_ids):
            for k in range(group_size):
                ep, env = self._start(task_id, g, seed=episode_seed(seed, g, k))
                episodes.append(ep)
                envs.append(env)
        draws = [(j, k) for j in range(len(probe_task_ids)) for k in range(max(probe_samples, 1))]
        draw_seeds = [episode_seed(probe_seed, j, k) for j, k in draws]
        probe = [self._start(probe_task_ids[j], j, seed=s) for (j, _), s in zip(draws, draw_seeds)]
        probe_temperature = self.temperature if probe_samples else 0.0
        probe_seeds = draw_seeds if probe_samples else [None] * len(draws)  # a greedy row draws nothing
        per = max(len(task_ids), 1) if self.batch_groups is None else self.batch_groups
        every = episodes + [ep for ep, _ in probe]

        def report(turn: int, ended: bool = False) -> None:
            if self.on_progress is not None:
                done = len(every) if ended else sum(ep.done for ep in every)
                self.on_progress(RolloutProgress(done, len(every), turn, self.max_turns,
                                                 time.perf_counter() - started))

        for first in range(0, max(len(task_ids), 1), per):
            rows = slice(first * group_size, (first + per) * group_size)
            riders = probe if first == 0 else []
            n_sampled = len(episodes[rows])
            self._lockstep(episodes[rows] + [ep for ep, _ in riders], envs[rows] + [env for _, env in riders],
                           [self.temperature] * n_sampled + [probe_temperature] * len(riders), cache, generator,
                           report, row_seeds=[None] * n_sampled + (probe_seeds if riders else []))
        report(self.max_turns, ended=True)
        for ep, env in zip(every, envs + [env for _, env in probe]):
            if not ep.done:  # out of turns: the episode is cut (reward 0, as a truncation)
                ep.info.setdefault("termination", "max_turns")
            env.close()
        wall = time.perf_counter() - started
        gen_tokens = sum(ep.generated_tokens for ep in episodes)
        return episodes, [ep for ep, _ in probe], {
            "rollout_s": wall, "generated_tokens": gen_tokens, "tokens_per_s": gen_tokens / max(wall, 1e-9),
            "probe_tokens": sum(ep.generated_tokens for ep, _ in probe)}

    def replay(self, task_id: str, turns: Sequence[str], *, seed: int = 0) -> Episode:
        """An episode in which the agent writes ``turns`` (raw assistant texts, one per turn)
        instead of sampling: the same tokens, loss mask and env record a rollout would hold had
        the policy generated exactly these texts (each turn ends with the stop token)."""
        ep, env = self._start(task_id, 0, seed=seed)
        for turn, text in enumerate(turns[: self.max_turns]):
            if ep.done:
                break
            self._advance(ep, env, self.renderer.encode(text) + self.stop_ids[:1], turn)
        if not ep.done:
            ep.info.setdefault("termination", "max_turns")
        env.close()
        return ep

    def _start(self, task_id: str, group: int, *, seed: int) -> tuple[Episode, Any]:
        """A fresh env reset on ``task_id`` and the episode holding its opening messages."""
        env = self.make_env()
        obs, info = env.reset(seed=seed, options={"task_id": task_id})
        ep = Episode(task_id=str(task_id), group=group, messages=list(obs), env_messages=list(obs), info=dict(info))
        ep.rendered_suffix = self.renderer.suffix(ep.messages)
        ep.suffix_ids = self.renderer.encode(ep.rendered_suffix)
        ep.loss_mask = [0] * len(ep.suffix_ids)
        return ep, env

    def _lockstep(self, episodes: list[Episode], envs: list[Any], temperatures: Sequence[float], cache,
                  generator: torch.Generator, report: Callable[[int], None] = lambda turn: None, *,
                  row_seeds: Sequence[int | None] | None = None) -> None:
        """Advance ``episodes`` turn by turn, all active ones sampled together each turn, episode
        i at ``temperatures[i]``; an episode with a seed in ``row_seeds`` draws its turn-t tokens
        from a generator of its own seeded ``turn_seed(row_seeds[i], t)``, the others from child
        generators of ``generator``."""
        seeds = list(row_seeds) if row_seeds is not None else [None] * len(episodes)
        prefix_len = len(self.renderer.prefix_ids)
        device = next(self.model.parameters()).device
        static = self._static_decoder()
        new_state = BatchCache.from_prefix if static is None else static.from_prefix
        if static is None:
            extend = extend_and_sample
        else:
            from .static_decode import static_extend_and_sample as extend
        state: BatchCache | None = None
        rows: list[int] = []  # the episode of each row of `state`
        cached = [0] * len(episodes)  # per episode: how many of its suffix tokens `state` holds
        for turn in range(self.max_turns):
            active = [i for i, ep in enumerate(episodes) if not ep.done]
            if not active:
                break
            fresh = state is None or not self.keep_turn_cache
            if fresh or any(cached[i] == len(episodes[i].suffix_ids) for i in active):
                state = new_state(cache, prefix_len, len(active))
                for i in active:
                    cached[i] = 0
            else:
                row_of = {episode: r for r, episode in enumerate(rows)}
                state = state.select([row_of[i] for i in active])
            rows = active
            new_tokens = [episodes[i].suffix_ids[cached[i]:] for i in active]
            outs = extend(
                self.model, state, new_tokens, max_new_tokens=self.max_new_tokens, stop_ids=self.stop_ids,
                pad_id=self.pad_id, temperature=[temperatures[i] for i in active],
                generator=sample_generator(generator, device),
                row_generators=[None if seeds[i] is None else
                                torch.Generator(device=device).manual_seed(turn_seed(seeds[i], turn)) for i in active],
            )
            for r, (i, gen) in enumerate(zip(active, outs)):
                cached[i] += len(new_tokens[r]) + state.generated_fed[r]
                self._advance(episodes[i], envs[i], gen, turn)
            report(turn + 1)

    def _advance(self, ep: Episode, env: Any, gen: list[int], turn: int) -> None:
        ended_on_stop = bool(gen) and gen[-1] in self.stop_ids
        content_ids = gen[:-1] if ended_on_stop else gen
        content = self.tokenizer.decode(content_ids, skip_special_tokens=True)
        gen_text = self.tokenizer.decode(gen, skip_special_tokens=False)
        ep.suffix_ids += gen
        ep.loss_mask += [1] * len(gen)
        ep.generated_tokens += len(gen)
        ep.turns += 1
        obs, reward, terminated, truncated, info = env.step(content)
        ep.messages.append({"role": "assistant", "content": content})
        new_env_messages = obs[len(ep.env_messages) + 1:]  # after the env's own assistant record
        ep.messages += new_env_messages
        ep.env_messages = list(obs)
        ep.info.update(info)
        if terminated or truncated:
            ep.done = True
            ep.reward = float(reward)
            return
        held = ep.rendered_suffix + gen_text
        text = self.renderer.suffix(ep.messages)
        if text.startswith(held):
            delta = text[len(held):]
        else:  # the template re-renders the assistant turn differently: keep our tokens
            closing = self.renderer.suffix(ep.messages[: len(ep.messages) - len(new_env_messages)],
                                          add_generation_prompt=False)
            delta = text[len(closing):]
            if not ended_on_stop:
                delta = self.tokenizer.decode(self.stop_ids[:1]) + delta
            ep.template_mismatches.append((turn, _first_difference(text, held)))
        delta_ids = self.renderer.encode(delta)
        ep.suffix_ids += delta_ids
        ep.loss_mask += [0] * len(delta_ids)
        ep.rendered_suffix = held + delta
        retokenized = self.renderer.encode(text)
        if retokenized != ep.suffix_ids:
            first = next((j for j, (a, b) in enumerate(zip(retokenized, ep.suffix_ids)) if a != b),
                         min(len(retokenized), len(ep.suffix_ids)))
            ep.retokenization_mismatches.append((turn, first))


DECODERS = ("auto", "eager", "static")
"""The values of ``RolloutEngine.decoder``."""


def decode_path(model: torch.nn.Module, decoder: str = "auto") -> str:
    """What ``decoder`` samples ``model``'s turns with: ``"eager"``, ``"static"`` or
    ``"static+cuda-graph"``, with the reason in parentheses when "auto" stays eager on CUDA. "auto"
    is static+cuda-graph on CUDA when the model allows it (the eager step is host-bound there) and
    eager elsewhere (on a CPU both cost the same: ``benchmarks/decode_speed.py``)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(map(repr, DECODERS))}, got {decoder!r}")
    if decoder == "eager":
        return "eager"
    on_cuda = next(model.parameters()).device.type == "cuda"
    if decoder == "auto" and not on_cuda:
        return "eager"
    from .static_decode import static_support

    reason = static_support(model)
    if decoder == "static" and reason is not None:
        raise ValueError(f"the static decoder cannot run this model: {reason}")
    if reason is not None:
        return f"eager (static path unsupported: {reason})"
    return "static+cuda-graph" if on_cuda else "static"


def sample_generator(parent: torch.Generator, device: torch.device | str = "cpu") -> torch.Generator:
    """A child generator on ``device`` (where the sampling probabilities live; ``multinomial``
    needs both on one device), seeded from the CPU ``parent``: per-turn sampling stays
    reproducible for a given device."""
    seed = int(torch.randint(0, 2**62, (1,), generator=parent))
    return torch.Generator(device=device).manual_seed(seed)


def episode_seed(seed: int, group: int, sibling: int) -> int:
    """The seed of sibling ``sibling`` of group ``group`` in a rollout under ``seed``: its env's
    reset seed, and for a sampled probe row also its sampler's (via :func:`turn_seed`)."""
    return seed * 1_000_003 + group * 101 + sibling


def turn_seed(row_seed: int, turn: int) -> int:
    """The seed of one row's turn-``turn`` generator. A generator per turn, not one per episode:
    a row that stops early in a turn still draws while the batch's other rows decode, so the
    draws a turn used up depend on the batch; a fresh one per turn keeps a row's draws its own."""
    return (row_seed * 1_000_033 + turn * 7_919 + 1) % 2**62


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

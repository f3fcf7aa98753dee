"""A static-KV-cache decode path for the lockstep rollout sampler, capturable with CUDA graphs.

The eager sampler (:func:`adapters.local.rollout.extend_and_sample`) grows a DynamicCache by one
column per step, so every step is a fresh, host-bound forward. Here each batch lives in a
preallocated :class:`StaticSlot`: transformers' ``StaticCache`` of ``capacity`` columns for a
bucketed number of rows (1, 2, 4, ..., 64, then multiples of 64), plus fixed-address input
buffers. Right-aligned feeding makes every lockstep step write the *same* column ``c`` for all
rows, which is exactly what ``StaticLayer`` does (it writes at its ``cumulative_length`` and
advances it), so one decode step has static shapes and no host work:

    attention[:, c] = live;  logits = model(tokens, positions, mask(attention));  positions += live

and on CUDA it is captured once per slot with ``torch.cuda.CUDAGraph`` and replayed. Sampling
(:func:`~adapters.local.rollout.row_sampler`), the stop test and the token bookkeeping stay outside
the graph, eager and identical to the eager path, so both give the same token ids.

The step builds its own 4-D additive mask (0 where attended, the dtype's most negative value
elsewhere) over the full capacity: transformers' ``masking_utils`` returns a 4-D mask as is (5.17
and 5.24 alike), so no version-specific mask logic (nor its host syncs) runs inside the graph.
Padding rows of a bucket attend column 0 only, are fed ``pad_id`` and never sampled: inert.

Between turns :meth:`StaticBatch.select` keeps only the rows of the episodes still running; the
next :func:`static_extend_and_sample` re-compacts them (and drops the columns none of them
attends, as :meth:`BatchCache.select` does) into the slot of the needed (rows, capacity) bucket,
so the column layout equals the eager path's, followed by masked, unused columns.
"""

from __future__ import annotations

import itertools
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
MIN_CAPACITY = 256
_lineages = itertools.count()


def bucket_rows(n: int) -> int:
    """The smallest of :data:`ROW_BUCKETS` ≥ ``n``; beyond the last, ``n`` rounded up to a multiple of it."""
    if n < 1:
        raise ValueError(f"need at least one row, got {n}")
    for b in ROW_BUCKETS:
        if n <= b:
            return b
    top = ROW_BUCKETS[-1]
    return -(-n // top) * top


def bucket_capacity(columns: int, minimum: int = MIN_CAPACITY) -> int:
    """Columns to preallocate for ``columns`` needed: the next power of two ≥ max(columns, minimum)
    (few distinct slots, so few captures, at most 2× the attention reads of a tight cache)."""
    return 1 << (max(columns, minimum) - 1).bit_length()


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where ``allowed``, ``finfo(dtype).min`` elsewhere: a masked column gets softmax weight
    exp(min − max) = 0 exactly, and a row with nothing allowed stays finite (no NaN)."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed.bool(), zero, torch.finfo(dtype).min)


def prefill_mask(attention: torch.Tensor, start: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """(rows, 1, width, capacity) mask of ``width`` queries written at columns start..start+width−1:
    query q sees column k iff ``attention[r, k] == 1`` and k ≤ start + q (causal over columns)."""
    columns = torch.arange(attention.shape[1], device=attention.device)
    queries = start + torch.arange(width, device=attention.device)
    causal = columns[None, :] <= queries[:, None]
    return additive_mask(attention.bool()[:, None, :] & causal[None], dtype)[:, None]


def static_support(model: torch.nn.Module) -> str | None:
    """Why the static path cannot run ``model`` (None when it can): it needs full-attention layers
    only (a sliding-window layer keeps a rolling buffer, not one column per step) and an attention
    implementation that takes a 4-D additive mask (sdpa or eager)."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    config = getattr(model, "config", None)
    if config is None:
        return "the model has no transformers config"
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} (the static path needs 'sdpa' or 'eager')"
    try:
        cache = StaticCache(config=config, max_cache_len=8)
    except Exception as err:  # noqa: BLE001  (an architecture StaticCache does not cover)
        return f"StaticCache does not build for this config ({err})"
    kinds = {type(layer).__name__ for layer in cache.layers if type(layer) is not StaticLayer}
    return f"cache layers {sorted(kinds)} are not full attention" if kinds else None


@dataclass
class StaticSlot:
    """Preallocated state of one (rows, capacity) bucket; every tensor keeps its address for life
    (a captured graph reads and writes them in place)."""

    rows: int
    capacity: int
    cache: Any
    """transformers ``StaticCache``; each layer writes at its ``cumulative_length`` (the write column)."""
    attention: torch.Tensor
    """(rows, capacity) long: 1 where the row attends."""
    tokens: torch.Tensor
    """(rows, 1) long: the tokens the next step feeds."""
    positions: torch.Tensor
    """(rows, 1) long: their positions (attended columns before them)."""
    live: torch.Tensor
    """(rows,) long: 1 where the fed token is real (the row has not stopped)."""
    logits: torch.Tensor
    """(rows, vocab) float32: the step's next-token logits."""
    dtype: torch.dtype
    graph: Any = None
    owner: int = -1
    """Lineage of the :class:`StaticBatch` whose rows the slot holds (-1: none)."""

    def set_column(self, column: int) -> None:
        """Make ``column`` the next one every layer writes."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(column)


@dataclass
class StaticBatch:
    """The rows of a lockstep batch held by a :class:`StaticDecoder` (the static counterpart of
    :class:`~adapters.local.rollout.BatchCache`, with the same ``select`` / ``generated_fed``).

    Either only the shared prefix (``slot is None``: expanded lazily to the rows) or ``columns``
    written columns of ``slot``, of which row r of this batch is slot row ``slot_rows[r]``."""

    decoder: StaticDecoder
    rows: int
    prefix: Any = None
    prefix_len: int = 0
    slot: StaticSlot | None = None
    slot_rows: list[int] = field(default_factory=list)
    columns: int = 0
    lineage: int = field(default_factory=lambda: next(_lineages))
    generated_fed: list[int] = field(default_factory=list)
    """Per row, after :func:`static_extend_and_sample`: generated tokens held in the cache (as in
    ``BatchCache.generated_fed``: all but the last sampled one, all if the row stopped early)."""

    def select(self, rows: Sequence[int]) -> StaticBatch:
        """The batch of only ``rows`` (in that order); the slot is re-compacted at the next extend."""
        rows = list(rows)
        fed = [self.generated_fed[r] for r in rows] if self.generated_fed else []
        if self.slot is None:
            return StaticBatch(self.decoder, len(rows), self.prefix, self.prefix_len, generated_fed=fed)
        return StaticBatch(self.decoder, len(rows), slot=self.slot, slot_rows=[self.slot_rows[r] for r in rows],
                           columns=self.columns, lineage=self.lineage, generated_fed=fed)


class StaticDecoder:
    """Owns the slots (at most ``max_slots``, least recently used evicted) of one model.

    ``capture`` (default: the model is on CUDA) records each slot's decode step as a CUDA graph;
    if capture fails the step runs uncaptured, with a warning, and :attr:`name` says so."""

    def __init__(self, model: torch.nn.Module, *, capture: bool | None = None, max_slots: int = 3) -> None:
        reason = static_support(model)
        if reason is not None:
            raise ValueError(f"the static decoder cannot run this model: {reason}")
        param = next(model.parameters())
        self.model = model
        self.device, self.dtype = param.device, param.dtype
        self.capture = self.device.type == "cuda" if capture is None else bool(capture)
        if self.capture and self.device.type != "cuda":
            raise ValueError("CUDA-graph capture needs the model on a CUDA device")
        self.max_slots = max_slots
        self.capture_error: str | None = None
        self.slots: OrderedDict[tuple[int, int], StaticSlot] = OrderedDict()
        self._weights: tuple[int, ...] = ()
        from .rollout import cache_kwarg

        self.cache_key = cache_kwarg(model)

    @property
    def name(self) -> str:
        """'static+cuda-graph' when steps replay a captured graph, else 'static'."""
        if self.capture and self.capture_error is None:
            return "static+cuda-graph"
        return "static" if self.capture_error is None else f"static (cuda-graph capture failed: {self.capture_error})"

    def from_prefix(self, cache, prefix_len: int, rows: int) -> StaticBatch:
        """A batch of ``rows`` rows holding only the shared prefix (a one-row DynamicCache)."""
        self._check_weights()
        return StaticBatch(self, rows, cache, prefix_len)

    def _check_weights(self) -> None:
        """Drop every slot (and graph) if the parameters moved: a graph reads them by address."""
        weights = tuple(p.data_ptr() for p in self.model.parameters())
        if weights != self._weights:
            self.slots.clear()
            self._weights = weights

    def slot(self, rows: int, capacity: int, template, *, keep: StaticSlot | None = None) -> StaticSlot:
        """The slot of (``rows``, ``capacity``) (made, and captured, on first use); ``template`` is a
        cache whose layers give the per-layer heads and head size; ``keep`` is never evicted."""
        key = (rows, capacity)
        if key in self.slots:
            self.slots.move_to_end(key)
            return self.slots[key]
        while len(self.slots) >= self.max_slots:
            victim = next((k for k, s in self.slots.items() if s is not keep), None)
            if victim is None:
                break
            del self.slots[victim]
        made = self._new_slot(rows, capacity, template)
        self.slots[key] = made
        return made

    def _new_slot(self, rows: int, capacity: int, template) -> StaticSlot:
        from transformers import StaticCache

        cache = StaticCache(config=self.model.config, max_cache_len=capacity)
        for layer, source in zip(cache.layers, template.layers):
            empty = torch.zeros((rows, source.keys.shape[1], 0, source.keys.shape[3]), dtype=self.dtype,
                                device=self.device)
            layer.lazy_initialization(empty, empty)
        head = self.model.get_output_embeddings()
        vocab = head.weight.shape[0] if head is not None else self.model.config.get_text_config().vocab_size
        longs = dict(dtype=torch.long, device=self.device)
        made = StaticSlot(rows, capacity, cache, torch.zeros((rows, capacity), **longs),
                          torch.zeros((rows, 1), **longs), torch.zeros((rows, 1), **longs),
                          torch.zeros(rows, **longs), torch.zeros((rows, vocab), dtype=torch.float32,
                                                                 device=self.device), self.dtype)
        if self.capture and self.capture_error is None:
            try:
                made.graph = self._capture(made)
            except Exception as err:  # noqa: BLE001  (fall back to the uncaptured step)
                self.capture_error = f"{type(err).__name__}: {err}"
                warnings.warn(f"static decoder: CUDA-graph capture failed, steps run uncaptured ({self.capture_error})",
                              stacklevel=2)
                made.graph = None
        return made

    def _capture(self, slot: StaticSlot):
        """Record ``slot``'s decode step (after two warm-up runs on a side stream, as CUDA graphs
        require); the warm-ups write only inert data that the next load overwrites."""
        slot.attention.zero_()
        slot.attention[:, 0] = 1
        slot.set_column(1)
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                decode_step(self.model, slot, self.cache_key)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            decode_step(self.model, slot, self.cache_key)
        torch.cuda.synchronize(self.device)
        return graph

    def step(self, slot: StaticSlot) -> None:
        """One decode step of ``slot``: the captured graph's replay, or the same step run eagerly."""
        if slot.graph is not None:
            slot.graph.replay()
        else:
            decode_step(self.model, slot, self.cache_key)


def decode_step(model: torch.nn.Module, slot: StaticSlot, cache_key: str) -> None:
    """Feed ``slot.tokens`` at the write column c (static shapes, no host sync):
    attention[:, c] = live; logits = model(tokens | positions, mask); positions += live."""
    column = slot.cache.layers[0].cumulative_length.reshape(1)
    slot.attention.index_copy_(1, column, slot.live[:, None])
    mask = additive_mask(slot.attention, slot.dtype)[:, None, None, :]
    out = model(input_ids=slot.tokens, attention_mask=mask, position_ids=slot.positions, use_cache=True,
                **{cache_key: slot.cache})
    slot.logits.copy_(out.logits[:, -1, :])
    slot.positions.add_(slot.live[:, None])


def _load(state: StaticBatch, extra: int, pad_id: int) -> StaticSlot:
    """Put ``state``'s rows, compacted, into the slot of their bucket (rows, capacity ≥ L + ``extra``):
    row r → slot row r, the L columns any of them attends → columns 0..L−1 (order kept), as
    ``BatchCache.select`` compacts; padding rows attend column 0 only. Sets ``state.slot``,
    ``slot_rows`` and ``columns`` (= L); returns the slot."""
    decoder, n, source = state.decoder, state.rows, state.slot
    if source is not None and source.owner != state.lineage:
        raise RuntimeError("this StaticBatch's slot was taken over by another batch (or evicted)")
    if source is None:
        keep, length, template = None, state.prefix_len, state.prefix
    else:
        index = torch.tensor(state.slot_rows, dtype=torch.long, device=decoder.device)
        kept_attention = source.attention.index_select(0, index)[:, : state.columns]
        keep = torch.nonzero(kept_attention.any(0)).flatten()
        length, template = int(keep.numel()), source.cache
    slot = decoder.slot(bucket_rows(n), bucket_capacity(length + extra), template, keep=source)
    in_place = source is slot and state.slot_rows == list(range(n)) and length == state.columns
    if not in_place:
        if source is None:
            attention = torch.ones((n, length), dtype=torch.long, device=decoder.device)
            for dst, src in zip(slot.cache.layers, state.prefix.layers):
                dst.keys[:n, :, :length].copy_(src.keys.expand(n, *src.keys.shape[1:]))
                dst.values[:n, :, :length].copy_(src.values.expand(n, *src.values.shape[1:]))
        else:
            attention = kept_attention.index_select(1, keep)
            for dst, src in zip(slot.cache.layers, source.cache.layers):  # layer by layer: one layer's copy at a time
                k = src.keys.index_select(0, index).index_select(2, keep)
                v = src.values.index_select(0, index).index_select(2, keep)
                dst.keys[:n, :, :length].copy_(k)
                dst.values[:n, :, :length].copy_(v)
        slot.attention[:n, :length] = attention
    slot.attention[:n, length:] = 0
    slot.attention[n:] = 0
    slot.attention[n:, 0] = 1
    slot.tokens.fill_(pad_id)
    slot.live.zero_()
    slot.positions.zero_()
    slot.set_column(length)
    if source is not None and source is not slot:
        source.owner = -1
    slot.owner = state.lineage
    state.slot, state.slot_rows, state.columns, state.prefix = slot, list(range(n)), length, None
    return slot


@torch.no_grad()
def static_extend_and_sample(
    model: torch.nn.Module,
    state: StaticBatch,
    new_tokens: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
    temperature: float | Sequence[float] = 1.0,
    generator: torch.Generator | None = None,
    row_generators: Sequence[torch.Generator | None] | None = None,
) -> list[list[int]]:
    """:func:`~adapters.local.rollout.extend_and_sample` on a :class:`StaticBatch`: the same
    contract and token ids (right-aligned feeding, positions over attended columns, per-row
    temperatures and generators drawn by :func:`~adapters.local.rollout.row_sampler` on the real rows only),
    with the decode steps run by the decoder's fixed-shape (captured on CUDA) step."""
    from .rollout import row_sampler

    if any(len(t) == 0 for t in new_tokens):
        raise ValueError("every row needs at least one new token to sample from")
    n = len(new_tokens)
    if n != state.rows:
        raise ValueError(f"{n} rows of new tokens for a batch of {state.rows} rows")
    if model is not state.decoder.model:
        raise ValueError("the batch's decoder was built for another model")
    decoder = state.decoder
    device = decoder.device
    pick = row_sampler(temperature, n, device=device, generator=generator, row_generators=row_generators)
    width = max(len(t) for t in new_tokens)
    slot = _load(state, width + max_new_tokens, pad_id)
    start, rows = state.columns, slot.rows
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    new_attn = torch.zeros((rows, width), dtype=torch.long)
    for i, t in enumerate(new_tokens):  # built on the host, moved in one copy each
        ids[i, width - len(t):] = torch.tensor(list(t), dtype=torch.long)
        new_attn[i, width - len(t):] = 1
    ids, new_attn = ids.to(device), new_attn.to(device)
    slot.attention[:, start:start + width] = new_attn
    positions = (slot.attention[:, : start + width].cumsum(-1) - 1).clamp(min=0)[:, -width:]
    out = model(input_ids=ids, attention_mask=prefill_mask(slot.attention, start, width, decoder.dtype),
                position_ids=positions, use_cache=True, logits_to_keep=1, **{decoder.cache_key: slot.cache})
    logits = out.logits[:n, -1, :].float()
    del out
    slot.positions[:n] = positions[:n, -1:] + 1
    stop = torch.tensor(list(stop_ids), device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    stopped = [False] * n  # `finished` on the host: the all-stopped test needs no second transfer
    stop_set = set(stop_ids)
    fed = torch.zeros(n, dtype=torch.long, device=device)
    generated: list[list[int]] = [[] for _ in range(n)]
    columns = start + width
    for step in range(max_new_tokens):
        token = pick(logits)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        live = ~finished  # rows for which `token` is a real token (the stop token included)
        tokens_host, live_host = torch.stack([token, live.long()]).tolist()  # one transfer a step
        for i, (t, alive) in enumerate(zip(tokens_host, live_host)):
            if alive:
                generated[i].append(t)
                stopped[i] = t in stop_set
        finished |= torch.isin(token, stop)
        if all(stopped) or step == max_new_tokens - 1:
            break
        slot.tokens[:n, 0] = token
        slot.live[:n] = live.long()
        decoder.step(slot)
        logits = slot.logits[:n]
        fed += live.long()
        columns += 1
    state.columns = columns
    state.generated_fed = fed.tolist()
    return generated

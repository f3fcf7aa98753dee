"""``sgcd-bench inspect-credit``: where did SGCD put the credit?

Rolls out one group of siblings, builds the credit reference and the teacher exactly as a
training step does (``adapters.local.methods.sgcd.SGCD``), and prints one trajectory with every
generated token coloured by its weight w_t (blue below 1, red above 1) beside the trajectory's
advantage A_i. Nothing is trained.
"""

from __future__ import annotations

import copy

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from adapters.local.forward import collate, generated_hidden, pack
from adapters.local.model import LoadedModel
from adapters.local.trainer import LocalTrainer
from algorithms import grpo

from .progress import Display
from .run import Pieces, policy_engine, task_ids


def weight_style(w: float, w_min: float, w_max: float) -> str:
    """Background colour for a weight: white at 1, towards blue at w_min and red at w_max."""
    if w >= 1:
        t = (w - 1) / max(w_max - 1, 1e-9)
        r, g, b = 255, int(255 * (1 - t)), int(255 * (1 - t))
    else:
        t = (1 - w) / max(1 - w_min, 1e-9)
        r, g, b = int(255 * (1 - t)), int(255 * (1 - t)), 255
    return f"black on rgb({r},{g},{b})"


def show_credit(base: LoadedModel, pieces: Pieces, *, task: str | None, episode: int, console: Console) -> bool:
    """Print the credit view; False (with a message) when no mixed group could be drawn."""
    preset = pieces.preset
    model = copy.deepcopy(base.model)
    engine = policy_engine(base, pieces, model, preset.train_split, preset.loop.temperature)
    pool = [task] if task else task_ids(pieces.make_env, preset.train_split, None)
    trainer = LocalTrainer(model, base.tokenizer, engine, method="sgcd", loop=preset.loop, grpo_cfg=preset.grpo,
                           sampling_cfg=preset.sampling, configs=preset.method_configs(),
                           summarizer=pieces.summarizer, task_pool=pool)
    display = Display(console)
    with display.shown():
        engine.on_progress = display.evaluation("rollout", preset.train_split).rollout
        kept, rollouts, _, _ = trainer.collect()
    if not kept:
        console.print(f"no group with both a success and a failure in {len(rollouts)} rollouts; "
                      "try another --task, a larger --group-size or another --seed")
        return False
    group = [ep for ep in kept if ep.group == kept[0].group]
    if not 0 <= episode < len(group):
        console.print(f"--episode must be in 0..{len(group) - 1}")
        return False
    device = next(model.parameters()).device
    batch = collate(group, pad_id=engine.pad_id, device=device)
    rewards = torch.tensor([ep.reward for ep in group])
    adv, _ = grpo.group_advantages(rewards, torch.zeros(len(group), dtype=torch.long),
                                   norm_by_std=preset.grpo.norm_by_std)
    with torch.no_grad():
        hidden = generated_hidden(model, [engine.renderer.prefix_ids] * len(group), batch, grad=False)
    _, pmask = pack(hidden[:, 0], batch.mask)
    signal = trainer.method.prepare(group, rewards, torch.zeros(len(group), dtype=torch.long))
    w, metrics = trainer.method.credit_weights(group, batch, hidden, pmask, signal.teacher_prefixes)
    metrics = {**{k.removeprefix("sgcd/"): v for k, v in signal.metrics.items()}, **metrics}
    ep = group[episode]
    weights = w[episode][: sum(ep.loss_mask)].tolist()
    cfg = preset.sgcd
    text = Text()
    k = 0
    tok = base.tokenizer
    for token_id, gen in zip(ep.suffix_ids, ep.loss_mask):
        piece = tok.decode([token_id])
        if gen:
            text.append(piece, style=weight_style(weights[k], cfg.w_min, cfg.w_max))
            k += 1
        else:
            text.append(piece, style="dim")
    summary = Table.grid(padding=(0, 2))
    summary.add_row("task", ep.task_id, "reward", f"{ep.reward:g}", "advantage A_i", f"{float(adv[episode]):+.3f}")
    summary.add_row("siblings", " ".join(f"{e.reward:g}" for e in group), "w range",
                    f"{min(weights):.2f} … {max(weights):.2f}", "mean w", f"{sum(weights) / len(weights):.3f}")
    summary.add_row("reference", "yes" if metrics.get("groups_with_reference") else "none (w = 1)",
                    "summarizer", pieces.summarizer_label, "", "")
    console.print(summary)
    console.print(text)
    console.print(Text("legend: ", style="bold") + Text(f" w={cfg.w_min:g} ", style=weight_style(cfg.w_min, cfg.w_min, cfg.w_max))
                  + Text(" w=1 ", style=weight_style(1, cfg.w_min, cfg.w_max))
                  + Text(f" w={cfg.w_max:g} ", style=weight_style(cfg.w_max, cfg.w_min, cfg.w_max))
                  + Text("  dim = environment/user tokens (no loss)"))
    return True

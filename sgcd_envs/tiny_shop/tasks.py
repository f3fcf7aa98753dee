"""Tiny-shop tasks: a pure generator ``(seed, index) -> Task``, each task with its own small
world, and the two splits built from it (``train``: any index of the train seed, unlimited;
``test``: the first 50 indices of the test seed, fixed).

The kind of task ``index`` is ``KIND_CYCLE[index % 10]``, so any 10 consecutive indices (and the
whole test split) hold exactly 5 action and 5 no-write tasks, 3 of them refusals.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from dataclasses import dataclass
from typing import Literal

from sgcd_common import unknown_choice

from ..core import ToolCall
from .world import CITIES, ITEMS, STATUSES, WRITE_TOOLS, Order

Kind = Literal["cancel", "move", "cancel_mine", "move_mine", "cancel_two",
               "refuse_cancel", "refuse_move", "ask_status", "ask_city"]
Category = Literal["action", "no_write"]

KIND_CYCLE: tuple[Kind, ...] = ("cancel", "move", "refuse_cancel", "ask_status", "cancel_mine",
                                "cancel_two", "refuse_move", "move_mine", "refuse_cancel", "ask_city")
"""Kinds of indices 0..9 (then again): 5 action, 3 refusal (no write, nothing to communicate) and
2 question (no write, one fact to communicate) tasks."""

DO_NOTHING_SCORE = sum(k.startswith("refuse") for k in KIND_CYCLE) / len(KIND_CYCLE)
"""Reward of an agent that never calls a tool and closes the conversation: 0.3 on the test split
and on any 10 consecutive train indices (it passes exactly the refusals)."""

NO_WRITE_SCORE = sum(not k.startswith(("cancel", "move")) for k in KIND_CYCLE) / len(KIND_CYCLE)
"""Reward of an agent that solves every task except that it never writes (a collapsed agent): 0.5."""

SPLIT_SEEDS = {"train": 0, "test": 1}
"""The seed of each split (fixed: changing one is a new env version)."""

TEST_SIZE = 50
DEFAULT_TRAIN_POOL = 10_000
"""How many train ids ``task_ids()`` lists by default; ``reset`` takes any ``train-N``."""
MAX_INDEX = 10**12
"""Indices of a split go up to this bound (exclusive)."""

_TASK_ID = re.compile(r"(train|test)-(0|[1-9]\d{0,11})")


@dataclass(frozen=True)
class Task:
    """One tiny-shop task.

    ``world``: the orders at the start; ``request``: the user's first message; ``facts``: what the
    user says when the agent asks a question; ``actions``: the reference tool calls (the gold
    state is their replay on ``world``); ``communicate_info``: strings the agent must say;
    ``reply``: the reference agent's closing message (it contains ``communicate_info``).
    """

    id: str
    split: str
    kind: Kind
    world: tuple[Order, ...]
    request: str
    facts: str
    actions: tuple[ToolCall, ...]
    communicate_info: tuple[str, ...]
    reply: str

    @property
    def category(self) -> Category:
        """``action`` when the reference actions contain a write, else ``no_write`` (as τ³)."""
        return "action" if any(a.name in WRITE_TOOLS for a in self.actions) else "no_write"

    @property
    def instructions(self) -> dict[str, str]:
        """The task as a τ³-style user scenario (for an LLM user, should one be passed)."""
        return {"domain": "tiny shop", "reason_for_call": self.request, "known_info": self.facts,
                "task_instructions": "Give your ids when asked; end the chat once your request is handled or refused."}


def _call(task_key: str, k: int, name: str, **arguments: str) -> ToolCall:
    return ToolCall(name, arguments, f"{task_key}_{k}")


def _world(rng: random.Random) -> list[Order]:
    """2-3 users and 3-5 orders with short ids, random items, cities and statuses; every user
    owns at least one order."""
    users = [f"u{n}" for n in rng.sample(range(1, 10), rng.randint(2, 3))]
    ids = [f"o{n}" for n in rng.sample(range(1, 100), rng.randint(3, 5))]
    owners = users + [rng.choice(users) for _ in ids[len(users):]]
    rng.shuffle(owners)
    return [Order(i, u, rng.choice(ITEMS), rng.choice(CITIES), rng.choice(STATUSES)) for i, u in zip(ids, owners)]


def _set(world: list[Order], i: int, **changes: str) -> Order:
    world[i] = dataclasses.replace(world[i], **changes)
    return world[i]


def _closed(rng: random.Random) -> str:
    return rng.choice(("shipped", "delivered"))


def _other_city(rng: random.Random, city: str) -> str:
    return rng.choice([c for c in CITIES if c != city])


def generate_task(seed: int, index: int) -> Task:
    """Task ``index`` of ``seed``: a pure function (the same arguments give the same task in any
    process). Its id is ``"<split>-<index>"`` for a split's seed, else ``"seed<seed>-<index>"``."""
    if not 0 <= index < MAX_INDEX:
        raise ValueError(f"task index must be in [0, {MAX_INDEX}), got {index}")
    split = next((name for name, s in SPLIT_SEEDS.items() if s == seed), f"seed{seed}")
    key = f"{split}-{index}"
    rng = random.Random(f"tiny-shop/{seed}/{index}")
    kind = KIND_CYCLE[index % len(KIND_CYCLE)]
    world = _world(rng)
    t = rng.randrange(len(world))
    oid = world[t].id
    get = _call(key, 0, "get_order", order_id=oid)
    communicate: tuple[str, ...] = ()
    if kind in ("cancel_mine", "move_mine"):
        user = rng.choice(sorted({o.user for o in world}))
        theirs = [i for i, o in enumerate(world) if o.user == user]
        t = rng.choice(theirs)
        for i in theirs:
            _set(world, i, status="pending" if i == t else _closed(rng))
        oid = world[t].id
        find = _call(key, 0, "find_orders", user_id=user)
        facts = f"My user id is {user}."
        if kind == "cancel_mine":
            request = f"Hi, I am {user}. Please cancel my pending order."
            actions = (find, _call(key, 1, "cancel_order", order_id=oid))
            reply = f"Done: order {oid} is cancelled."
        else:
            city = _other_city(rng, world[t].city)
            request = f"Hi, I am {user}. Please send my pending order to {city}."
            facts += f" Send it to {city}."
            actions = (find, _call(key, 1, "change_city", order_id=oid, city=city))
            reply = f"Done: order {oid} now goes to {city}."
    elif kind in ("cancel", "refuse_cancel"):
        status = _set(world, t, status="pending" if kind == "cancel" else _closed(rng)).status
        request, facts = f"Hi, please cancel my order {oid}.", f"My order is {oid}."
        if kind == "cancel":
            actions = (get, _call(key, 1, "cancel_order", order_id=oid))
            reply = f"Done: order {oid} is cancelled."
        else:
            actions, reply = (get,), f"Sorry, order {oid} is {status}, so it cannot be cancelled."
    elif kind in ("move", "refuse_move"):
        order = _set(world, t, status="pending" if kind == "move" else _closed(rng))
        city = _other_city(rng, order.city)
        request, facts = f"Hi, please send my order {oid} to {city}.", f"My order is {oid}. Send it to {city}."
        if kind == "move":
            actions = (get, _call(key, 1, "change_city", order_id=oid, city=city))
            reply = f"Done: order {oid} now goes to {city}."
        else:
            actions, reply = (get,), f"Sorry, order {oid} is {order.status}, so it cannot be changed."
    elif kind == "cancel_two":
        s = rng.choice([i for i in range(len(world)) if i != t])
        _set(world, t, status="pending")
        second = _set(world, s, user=world[t].user, status=rng.choice(("pending", "shipped", "delivered")))
        request, facts = f"Hi, please cancel my orders {oid} and {second.id}.", f"My orders are {oid} and {second.id}."
        actions = (get, _call(key, 1, "cancel_order", order_id=oid), _call(key, 2, "get_order", order_id=second.id))
        if second.status == "pending":
            actions += (_call(key, 3, "cancel_order", order_id=second.id),)
            reply = f"Done: orders {oid} and {second.id} are cancelled."
        else:
            reply = f"Done: order {oid} is cancelled. Order {second.id} is {second.status}, so it cannot be cancelled."
    elif kind == "ask_status":
        status = world[t].status
        request, facts = f"Hi, what is the status of my order {oid}?", f"My order is {oid}."
        actions, communicate, reply = (get,), (status,), f"Order {oid} is {status}."
    else:  # ask_city
        city = world[t].city
        request, facts = f"Hi, which city does my order {oid} go to?", f"My order is {oid}."
        actions, communicate, reply = (get,), (city,), f"Order {oid} goes to {city}."
    return Task(key, split, kind, tuple(world), request, facts, actions, communicate, reply)


def check_split(split: str) -> str:
    if split not in SPLIT_SEEDS:
        raise ValueError(unknown_choice("split", split, SPLIT_SEEDS))
    return split


def task_ids(split: str, train_size: int = DEFAULT_TRAIN_POOL) -> list[str]:
    """The listed ids of ``split``: ``test-0..test-49``, or the first ``train_size`` train ids."""
    size = TEST_SIZE if check_split(split) == "test" else train_size
    return [f"{split}-{i}" for i in range(size)]


@functools.lru_cache(maxsize=16_384)
def get_task(task_id: str) -> Task:
    """The task of an id ``train-N`` (any ``0 <= N < 10**12``) or ``test-N`` (``N < 50``)."""
    match = _TASK_ID.fullmatch(str(task_id))
    index = int(match.group(2)) if match else -1
    if match is None or (match.group(1) == "test" and index >= TEST_SIZE):
        raise ValueError(f"Unknown tiny-shop task id {task_id!r}: ids are 'train-N' (any N >= 0) "
                         f"and 'test-0'..'test-{TEST_SIZE - 1}'")
    return generate_task(SPLIT_SEEDS[match.group(1)], index)

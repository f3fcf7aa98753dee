"""``sgcd_envs/TinyShop-v0``: the CartPole of tool use, a procedurally generated shop small
enough that a ~100M-parameter model can learn it within minutes, with τ's reward semantics and
τ's do-nothing shortcut."""

from __future__ import annotations

from typing import Any

from ..core import ToolCall, ToolUseEnv, UserSimulator
from .reward import score_state
from .tasks import DEFAULT_TRAIN_POOL, TEST_SIZE, Task, check_split, get_task, task_ids
from .user import ShopUser
from .world import Order, Orders, run_call, tool_specs

POLICY = (
    "You help customers of a small shop with their orders. Look an order up (get_order, or "
    "find_orders for a user's orders) before you change it. Only a pending order may be cancelled "
    "or sent to another city; if it is shipped or delivered, change nothing and tell the user it "
    "cannot be done. Answer questions with facts from the tools. Keep replies short."
)
"""The agent's policy (under 400 characters)."""


class TinyShopEnv(ToolUseEnv):
    """A tiny shop: one user, a few orders, four tools, one to four calls per task.

    ## Description
    Each task has its own world of 3-5 orders (ids ``o1``..``o99``) of 2-3 users (``u1``..``u9``),
    each with an item, a destination city and a status (pending / shipped / delivered). The user
    asks for one thing; the agent serves them under :data:`POLICY` with four tools:
    ``find_orders(user_id)`` and ``get_order(order_id)`` (reads), ``cancel_order(order_id)`` and
    ``change_city(order_id, city)`` (writes). Results are one line of JSON under 120 characters,
    e.g. ``{"id": "o12", "user": "u3", "item": "lamp", "city": "Oslo", "status": "shipped"}``.

    ## Tasks
    Task ``index`` of a split has kind ``KIND_CYCLE[index % 10]`` (:mod:`.tasks`):

    | kind | the user asks | reference calls | category | communicate |
    |---|---|---|---|---|
    | cancel (×1) | cancel o12 (pending) | get_order, cancel_order | action | — |
    | move (×1) | send o12 to Rome (pending) | get_order, change_city | action | — |
    | cancel_mine (×1) | "I am u3", cancel my pending order | find_orders, cancel_order | action | — |
    | move_mine (×1) | "I am u3", send my pending order to Rome | find_orders, change_city | action | — |
    | cancel_two (×1) | cancel o12 and o40 | get, cancel, get(, cancel) | action | — |
    | refuse_cancel (×2) | cancel o12 (shipped/delivered) | get_order | no_write | — |
    | refuse_move (×1) | send o12 to Rome (shipped/delivered) | get_order | no_write | — |
    | ask_status (×1) | status of o12 | get_order | no_write | the status |
    | ask_city (×1) | city of o12 | get_order | no_write | the city |

    Splits: ``train`` = ``train-N`` for any N (seed 0); ``task_ids()`` lists the first
    ``train_size`` (10,000). ``test`` = ``test-0``..``test-49`` (seed 1), fixed.

    ## Action Space
    :class:`~sgcd_envs.core.AgentAction`: the assistant's raw text; tool calls as Hermes
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks or bare JSON. A text
    without calls goes to the user; ``###STOP###`` in it ends the episode.

    ## Observation Space
    :class:`~sgcd_envs.core.ChatMessages`: the conversation so far, no system message.

    ## Rewards
    0 per step. At the end (τ³'s semantics, :mod:`.reward`):
    ``1[final orders == orders after replaying the reference calls] × 1[every communicate string
    in an agent message]``, 0 on an abnormal end. The do-nothing agent (no call, a closing line)
    scores exactly ``DO_NOTHING_SCORE`` = 0.3 (the refusals); an agent that never writes but does
    everything else right scores ``NO_WRITE_SCORE`` = 0.5; the reference agent scores 1.

    ## Starting State
    ``reset(options={"task_id": "train-7"})``, else a listed id of the split drawn with
    ``self.np_random``. The user (:class:`~.user.ShopUser`, the env's own) speaks first.

    ## Episode End
    See :class:`~sgcd_envs.core.ToolUseEnv`; the user ends the conversation at the agent's first
    answer (a statement naming an id of the task) or closing phrase (:mod:`.user`); ``max_turns``
    (8) truncates.

    ## Info
    Reset: ``task_id``, ``split``, ``category``, ``kind``, ``policy``, ``tools``, ``user_simulator``.
    End: ``reward``, ``db_match``, ``communicate_match``, ``write_calls``, ``category``, ``kind``,
    ``termination``.

    ## Arguments
    ``split`` (``train``/``test``), ``user`` (default :class:`~.user.ShopUser`), ``max_turns`` (8),
    ``max_tokens`` (None), ``train_size`` (10,000: how many train ids ``task_ids()`` lists), and
    the base class's ``token_counter``, ``max_errors``, ``max_messages``, ``max_tool_output_chars``.

    ## Design: why each choice
    - *A fresh small world per task, generated from (seed, index).* Unlimited train tasks, so
      RL cannot memorise a fixed database, and everything the agent needs is one call away; with
      at most five orders every tool result stays one short line. A pure generator makes a task
      id the whole task: any process rebuilds it, nothing is stored.
    - *Short ids (``o12``, ``u3``) named in the first message.* The core skill is copying an id
      from the request into a call: 2-3 tokens, no spelling to learn.
    - *Four tools, two reads and two writes.* The fewest that give a lookup by user
      (``find_orders``), a read by id (``get_order``) and writes with one and two arguments; the
      longest reference call is 40 SmolLM2 tokens (31 the shortest).
    - *The policy forbids what the tools allow.* ``cancel_order`` and ``change_city`` carry out a
      change of a shipped or delivered order (they refuse only the impossible: unknown ids, a
      cancelled order, an unknown or unchanged city). So writing has a cost: an agent that
      writes without reading fails the refusals. If the tools refused instead, blind writing
      would be free and nothing would push a policy towards writing less.
    - *Refusals communicate nothing; questions communicate one fact.* As in τ³-airline, whose
      refusal tasks are scored by the DB check alone, doing nothing is right on a refusal: that
      is the do-nothing shortcut, worth exactly 0.3 here. Questions need a read and the fact, so
      an agent that stops writing keeps 0.5 (no-write tasks) and loses every action task: the
      collapse the leaderboard's action / no-write split shows.
    - *Kinds by ``index % 10``.* The mix is exact on the test split and on every 10 consecutive
      train ids, so the baselines' scores are known numbers, not estimates.
    - *Horizons of 1-4 calls.* Reads for no-write tasks (1 call), read-then-write for actions
      (2), ``cancel_two`` for 3 or 4 (its second order may be one to refuse): enough spread for
      credit assignment, short enough for ~6 turns of ~48 new tokens.
    - *A deterministic user of its own.* It states the request with the ids, repeats them when
      asked, confirms when asked, and ends the conversation at the agent's first answer (a
      statement naming an id of the task) or closing phrase: no LLM, no stand-in mark, episodes
      stay short (an agent must act before it talks), and garbage text is no answer (so
      malformed output never ends an episode normally before the user's reply budget).
    - *τ's reward.* Replay of the reference calls on the task's world, compared record by record,
      times the case-insensitive communicate check; the communicated words (status words, city
      names) are chosen not to occur in closing phrases ("Nice" is no city here).
    - *Reference conversations by running the env* (:mod:`.reference`), so a warm start's data
      is what this env would record, and scores 1 by test.

    ## Version History
    * v0: initial version.
    """

    def __init__(
        self,
        split: str = "train",
        user: UserSimulator | None = None,
        max_turns: int = 8,
        max_tokens: int | None = None,
        train_size: int = DEFAULT_TRAIN_POOL,
        **kwargs: Any,
    ) -> None:
        if not isinstance(train_size, int) or train_size < 1:
            raise ValueError(f"train_size must be a positive int, got {train_size!r}")
        super().__init__(tool_specs(), user if user is not None else ShopUser(),
                         max_turns=max_turns, max_tokens=max_tokens, **kwargs)
        self.split = check_split(split)
        self.train_size = train_size
        self.policy = POLICY
        self._orders: Orders = {}

    def task_ids(self) -> list[str]:
        """The split's listed task ids, in order (``reset`` takes any ``train-N`` too)."""
        return task_ids(self.split, self.train_size)

    @property
    def orders(self) -> Orders:
        """The episode's orders (a copy)."""
        return dict(self._orders)

    def state_fingerprint(self) -> tuple[Order, ...]:
        return tuple(self._orders.values())

    def _begin_episode(self, options: dict[str, Any]) -> tuple[Task, dict[str, Any]]:
        unknown = set(options) - {"task_id"}
        if unknown:
            raise ValueError(f"Unknown reset option(s) {sorted(unknown)}; allowed: ['task_id']")
        if "task_id" in options:
            task = get_task(str(options["task_id"]))
            if task.split != self.split:
                raise ValueError(f"task_id {task.id!r} is not in split {self.split!r}")
        else:
            size = TEST_SIZE if self.split == "test" else self.train_size
            task = get_task(f"{self.split}-{int(self.np_random.integers(size))}")
        self._orders = {o.id: o for o in task.world}
        return task, {"task_id": task.id, "split": task.split, "category": task.category, "kind": task.kind,
                      "policy": self.policy}

    def _run_tool(self, call: ToolCall) -> str:
        return run_call(self._orders, call)

    def _score(self, termination: str) -> dict[str, Any]:
        score = score_state(self._task, self._orders, self._messages, self._write_calls, termination)
        return {**score.as_info(), "task_id": self._task.id, "kind": self._task.kind}

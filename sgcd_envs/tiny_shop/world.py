"""The tiny-shop world and its four tools: a few :class:`Order` records, two reads
(``find_orders``, ``get_order``) and two writes (``cancel_order``, ``change_city``), whose
docstrings become the OpenAI schemas the agent sees.

Tools validate, then mutate: a refused call raises :class:`~sgcd_envs.core.ToolExecutionError`
(an ``"Error: ..."`` observation) and changes nothing. They refuse only what cannot be done at
all (an unknown id, a cancelled order, a city the shop does not ship to, the city the order
already goes to); the *policy* forbids changing a shipped or delivered order, and the tools carry
such a change out, so an agent that writes without reading breaks the state (env.py says why).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Literal

from ..core import ToolCall, ToolExecutionError, ToolSpec, function_schema

Status = Literal["pending", "shipped", "delivered", "cancelled"]
STATUSES: tuple[Status, ...] = ("pending", "shipped", "delivered")
"""Statuses a generated order starts in (``cancelled`` only comes from ``cancel_order``)."""

CITIES = ("Oslo", "Rome", "Lima", "Pune", "Kyiv", "Riga", "Doha", "Lyon")
"""Where the shop ships: one short word each, none a part of a common English word (the
communicate check is a substring test, so "Nice" would match "have a nice day")."""

ITEMS = ("lamp", "mug", "book", "sock", "pen", "cap", "bag", "kite")

TOOL_NAMES = ("find_orders", "get_order", "cancel_order", "change_city")
WRITE_TOOLS = frozenset({"cancel_order", "change_city"})


@dataclass(frozen=True)
class Order:
    """One order: short id (``o12``), owner (``u3``), item, destination city and status."""

    id: str
    user: str
    item: str
    city: str
    status: Status

    def to_json(self) -> str:
        return compact(dataclasses.asdict(self))


Orders = dict[str, Order]
"""An episode's world: order id → order, in generation order."""


def compact(value: object) -> str:
    """A tool result: one line of JSON (with the spaces a Hermes call also has)."""
    return json.dumps(value)


def _shown(text: str) -> str:
    """An agent-given id as an error message echoes it: quoted, at most 24 characters."""
    return repr(text if len(text) <= 24 else text[:21] + "...")


class ShopTools:
    """The agent's tools over one episode's :data:`Orders` (mutated in place by the writes)."""

    def __init__(self, orders: Orders) -> None:
        self.orders = orders

    def _order(self, order_id: str) -> Order:
        order = self.orders.get(order_id)
        if order is None:
            raise ToolExecutionError(f"no order {_shown(order_id)}")
        return order

    def _open_order(self, order_id: str) -> Order:
        order = self._order(order_id)
        if order.status == "cancelled":
            raise ToolExecutionError(f"order {order.id} is cancelled")
        return order

    def find_orders(self, user_id: str) -> str:
        """List a user's orders and their status.

        Args:
            user_id: the user's id, e.g. u3
        """
        found = {o.id: o.status for o in self.orders.values() if o.user == user_id}
        if not found:
            raise ToolExecutionError(f"no orders for user {_shown(user_id)}")
        return compact(found)

    def get_order(self, order_id: str) -> str:
        """Get an order's details.

        Args:
            order_id: the order's id, e.g. o12
        """
        return self._order(order_id).to_json()

    def cancel_order(self, order_id: str) -> str:
        """Cancel an order.

        Args:
            order_id: the order's id, e.g. o12
        """
        order = self._open_order(order_id)
        self.orders[order.id] = dataclasses.replace(order, status="cancelled")
        return compact({"id": order.id, "status": "cancelled"})

    def change_city(self, order_id: str, city: str) -> str:
        """Send an order to another city.

        Args:
            order_id: the order's id, e.g. o12
            city: the new city, e.g. Rome
        """
        order = self._open_order(order_id)
        name = next((c for c in CITIES if c.lower() == city.strip().lower()), None)
        if name is None:
            raise ToolExecutionError(f"we do not ship to {_shown(city)}; cities: {', '.join(CITIES)}")
        if name == order.city:
            raise ToolExecutionError(f"order {order.id} already goes to {name}")
        self.orders[order.id] = dataclasses.replace(order, city=name)
        return compact({"id": order.id, "city": name})


@functools.lru_cache(maxsize=1)
def tool_specs() -> tuple[ToolSpec, ...]:
    """The OpenAI schemas of the four tools, from the signatures and docstrings above."""
    return tuple(ToolSpec(function_schema(getattr(ShopTools, n)), writes=n in WRITE_TOOLS) for n in TOOL_NAMES)


def run_call(orders: Orders, call: ToolCall) -> str:
    """Run one schema-valid call on ``orders``; a refusal raises and changes nothing."""
    return getattr(ShopTools(orders), call.name)(**call.arguments)


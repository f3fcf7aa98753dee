"""Tool machinery every τ domain shares: the guarded calculator (upstream's ``calculate`` runs
``eval`` on any string of digits and operators, which recursed or hung on hostile input), tool
results as text, and running one call as a transaction on a copy-on-write state."""

from __future__ import annotations

import ast
import inspect
import json
import operator
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from ..core import ToolExecutionError
from .state import TauState

_CALC_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div,
               ast.FloorDiv, ast.Pow, ast.USub, ast.UAdd)
_CALC_CHARS = frozenset("0123456789+-*/(). ")
MAX_CALC_CHARS = 1000
"""Longest expression ``calculate`` accepts."""
MAX_CALC_OPERATORS = 64
"""Most operator characters (``+ - * /``) an expression may have: each syntax-tree level needs
one, so this also bounds the depth that parsing and ``eval`` recurse to."""
MAX_CALC_BITS = 4096
"""Largest integer (in bits, about 1,233 digits) an intermediate result may reach; checked
before each ``*`` and ``**``, so nested powers such as ``((10**100)**100)**100`` stop at once."""


def _check_calculate_size(expression: str) -> None:
    """Reject an expression too long, or with too many operators, to be parsed safely."""
    if len(expression) > MAX_CALC_CHARS:
        raise ToolExecutionError(
            f"Invalid expression: at most {MAX_CALC_CHARS} characters, got {len(expression)}")
    operators = sum(expression.count(op) for op in "+-*/")
    if operators > MAX_CALC_OPERATORS:
        raise ToolExecutionError(
            f"Invalid expression: at most {MAX_CALC_OPERATORS} operators, got {operators}")


def _result_bits(op: ast.operator, left: Any, right: Any) -> int:
    """An upper bound of the bit length of ``left <op> right`` for integers (0: not an int op
    that can grow big: additions, divisions and anything with floats are cheap)."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return 0
    if isinstance(op, ast.Mult):
        return left.bit_length() + right.bit_length()
    if isinstance(op, ast.Pow) and right > 0:
        return left.bit_length() * right
    return 0


_CALC_OPS: dict[type[ast.AST], Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def _bounded_value(tree: ast.Expression) -> float | int:
    """Evaluate a vetted expression tree iteratively (post-order, no recursion), as ``eval``
    would, refusing any integer result over :data:`MAX_CALC_BITS` before computing it.

    Raises:
        ToolExecutionError: an intermediate result would be too large, or complex (``(-8)**0.5``:
            upstream's ``float()`` of it raised TypeError, which is no agent-mistake type).
        ArithmeticError: as ``eval`` (division by zero, float overflow).
    """
    values: list[Any] = []
    stack: list[tuple[ast.AST, bool]] = [(tree.body, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, ast.Constant):
            values.append(node.value)
        elif not children_done:
            stack.append((node, True))
            children = [node.operand] if isinstance(node, ast.UnaryOp) else [node.right, node.left]
            stack.extend((child, False) for child in children)
        elif isinstance(node, ast.UnaryOp):
            values.append(_CALC_OPS[type(node.op)](values.pop()))
        else:
            right, left = values.pop(), values.pop()
            if _result_bits(node.op, left, right) > MAX_CALC_BITS:
                raise ToolExecutionError(
                    f"Invalid expression: an intermediate result would exceed {MAX_CALC_BITS} bits")
            value = _CALC_OPS[type(node.op)](left, right)
            if isinstance(value, complex):
                raise ToolExecutionError("Invalid expression: the result is not a real number")
            values.append(value)
    return values[0]


def guard_calculate(expression: str) -> None:
    """Reject expressions that upstream's ``eval`` would choke on (syntax errors, tuples,
    calls like ``(1)(2)``, recursion on 5,000 terms) or hang on (``9**9**9``,
    ``((10**100)**100)**100``): only numbers, + - * / // ** and parentheses, at most
    :data:`MAX_CALC_CHARS` characters and :data:`MAX_CALC_OPERATORS` operators, a literal
    exponent of magnitude <= 100, and no intermediate integer over :data:`MAX_CALC_BITS` bits
    (found by evaluating the tree once, iteratively, before upstream does)."""
    if not all(c in _CALC_CHARS for c in expression):
        return  # upstream raises its own ValueError
    _check_calculate_size(expression)
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ToolExecutionError(f"Invalid expression: {err.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _CALC_NODES) or (isinstance(node, ast.Constant) and not isinstance(node.value, (int, float))):
            raise ToolExecutionError(f"Invalid expression: unsupported syntax '{type(node).__name__}'")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exp = node.right
            if isinstance(exp, ast.UnaryOp):
                exp = exp.operand
            if not (isinstance(exp, ast.Constant) and isinstance(exp.value, (int, float)) and abs(exp.value) <= 100):
                raise ToolExecutionError("Invalid expression: exponents must be number literals with |value| <= 100")
    _bounded_value(tree)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def format_output(value: Any) -> str:
    """Tool result as text: strings as they are, everything else as JSON (models dumped)."""
    return value if isinstance(value, str) else json.dumps(_jsonable(value), default=str)


def bounded_eval(expression: str) -> float | int:
    """The value of an arithmetic expression that passed :func:`guard_calculate`."""
    guard_calculate(expression)
    return _bounded_value(ast.parse(expression, mode="eval"))


def run_atomically(state: TauState, run: Callable[[TauState], Any]) -> str:
    """``run`` on a child of ``state``: on success its writes are committed and its result is
    returned as text; on an exception nothing is committed and the exception propagates."""
    txn = state.child()
    text = format_output(run(txn))
    state.commit(txn)
    return text


def documented_stub(fn: Callable[..., Any], doc: str) -> Callable[..., Any]:
    """A stand-in of ``fn`` for :func:`~sgcd_envs.core.function_schema`: docstring ``doc``
    (upstream's description), ``fn``'s signature without its first (state) parameter."""
    def documented(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("schema stand-in; not callable")

    sig = inspect.signature(fn, eval_str=True)
    documented.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
    documented.__doc__ = doc
    documented.__name__ = fn.__name__
    return documented

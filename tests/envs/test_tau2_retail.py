"""τ²-retail: data integrity, splits, reference replays, do-nothing baseline, tool semantics
against upstream's own tools, CoW state, error observations."""

from __future__ import annotations

import random
import shutil
import sys
import types

import gymnasium as gym
import pytest
from pydantic import BaseModel, ConfigDict

import sgcd_envs  # noqa: F401  (registers the ids)
from sgcd_envs.core import ToolCall
from sgcd_envs.tau2_retail import (
    WRITE_TOOLS, DataChecksumError, RetailState, ScriptedUser, Tau2RetailEnv, evaluate_episode, get_task, load_tasks,
    states_equal, tool_specs, upstream_hash,
)
from sgcd_envs.tau2_retail import data
from sgcd_envs.tau2_retail.domain import FAILING_REFERENCE_ACTIONS
from sgcd_envs.tau2_retail.tools import TOOL_NAMES, run_call
from sgcd_envs.tau_common.state import canonical


@pytest.fixture(scope="module")
def base():
    return data.base_db(data.data_dir())


@pytest.fixture(scope="module")
def base_hash(base):
    return upstream_hash(base)


def make_env(**kw) -> Tau2RetailEnv:
    return gym.make("sgcd_envs/Tau2Retail-v0", split="all", **kw).unwrapped


def play_reference(env: Tau2RetailEnv, task, closing: str | None = None):
    env.reset(seed=0, options={"task_id": task.id})
    errors = 0
    for a in task.actions:
        obs, r, term, trunc, info = env.step({"name": a.name, "arguments": a.arguments})
        errors += obs[-1]["content"].startswith("Error:")
        assert not (term or trunc)
    assert errors == FAILING_REFERENCE_ACTIONS.get(task.id, 0), task.id
    text = closing if closing is not None else " ".join(task.communicate_info) + " ###STOP###"
    return env.step(text)


def test_splits_categories_and_tools():
    train, test, everything = load_tasks("train"), load_tasks("test"), load_tasks("all")
    assert (len(train), len(test), len(everything)) == (74, 40, 114)
    assert sum(t.category == "action" for t in everything) == 105
    assert sum(bool(t.communicate_info) for t in everything) == 38
    assert [t.id for t in everything if not t.actions] == ["24", "57"]
    assert len(TOOL_NAMES) == 15 and WRITE_TOOLS == {n for n in TOOL_NAMES if n.startswith(("cancel", "modify", "return", "exchange"))}
    assert len(WRITE_TOOLS) == 7
    specs = {s.name: s for s in tool_specs()}
    assert "explicit user confirmation" in specs["cancel_pending_order"].schema["function"]["description"]  # upstream's doc
    assert specs["modify_pending_order_items"].parameters["properties"]["item_ids"]["type"] == "array"
    assert "db" not in specs["get_user_details"].parameters["properties"]
    with pytest.raises(ValueError, match="Did you mean 'test'"):
        load_tasks("tets")


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    src = data.data_dir()
    for name in data.MANIFEST:
        shutil.copy(src / name, tmp_path / name)
    assert data.data_dir(tmp_path) == tmp_path.resolve()  # a user-given upstream folder works
    (tmp_path / "tasks.json").write_text("[]")
    with pytest.raises(DataChecksumError, match="tasks.json has sha256"):
        data.data_dir(tmp_path)
    with pytest.raises(data.DataNotFoundError, match="holds no retail db.json"):
        data.data_dir(tmp_path / "nowhere")


def test_reference_actions_score_one_on_all_114(base, base_hash):
    """Every task's reference actions, then its communicate_info, score 1 (the 2 tasks without
    actions: the unchanged DB; the 23 reference calls that fail by design are error observations)."""
    env = make_env()
    for task in load_tasks("all"):
        obs, reward, term, trunc, info = play_reference(env, task)
        assert (reward, term, trunc) == (1.0, True, False), (task.id, info)
        assert info["db_match"] and info["communicate_match"] and info["termination"] == "agent_stop"
        assert info["write_calls"] == task.write_actions and info["category"] == task.category
        assert info["user_simulator"] == "scripted-stand-in"
        score = evaluate_episode(task, env.tool_calls, [m for m in obs if m["role"] == "assistant"], "agent_stop")
        assert score.as_info() == {k: info[k] for k in score.as_info()}
    assert upstream_hash(base) == base_hash  # the shared base DB was never mutated


def test_do_nothing_agent_passes_5_train_and_2_test():
    """It passes the 5 no-write tasks without communicate_info (10, 25, 50, 57 train; 65 test) and
    the 2 action tasks whose only reference write is refused by the tool (105 train, 12 test)."""
    env = make_env()
    wins = {"train": [], "test": []}
    for task in load_tasks("all"):
        env.reset(seed=0, options={"task_id": task.id})
        *_, reward, term, trunc, info = env.step("Sorry, I cannot help with that. ###STOP###")
        assert term and info["write_calls"] == 0
        if reward:
            wins[task.split].append(task.id)
    assert wins == {"train": ["10", "25", "50", "57", "105"], "test": ["12", "65"]}
    assert {t.id for t in load_tasks("all") if t.category == "action" and t.id in wins["train"] + wins["test"]} == {"12", "105"}


def test_missing_communicate_info_scores_zero():
    task = get_task("24")  # no actions; tell the user the materials
    *_, reward, _, _, info = play_reference(make_env(), task, closing="Done. ###STOP###")
    assert reward == 0.0 and info["db_match"] and not info["communicate_match"]
    *_, reward, _, _, info = play_reference(make_env(), task, closing="It is Polyester, and COTTON. ###STOP###")
    assert reward == 1.0


def test_tool_semantics(base):
    """A few upstream behaviours: gift-card refunds at once, the price difference, status rules."""
    st = RetailState(base)
    pending = next(o for o in base.orders.values() if o["status"] == "pending"
                   and base.users[o["user_id"]]["payment_methods"][o["payment_history"][0]["payment_method_id"]]["source"] == "gift_card")
    card = pending["payment_history"][0]["payment_method_id"]
    before = base.users[pending["user_id"]]["payment_methods"][card]["balance"]
    run_call(st, ToolCall("cancel_pending_order", {"order_id": pending["order_id"], "reason": "no longer needed"}, "c"))
    order = st.orders.peek(pending["order_id"])
    assert order["status"] == "cancelled" and order["payment_history"][-1]["transaction_type"] == "refund"
    assert st.users.peek(pending["user_id"])["payment_methods"][card]["balance"] == round(before + pending["payment_history"][0]["amount"], 2)
    with pytest.raises(ValueError, match="Non-pending order cannot be cancelled"):
        run_call(st, ToolCall("cancel_pending_order", {"order_id": pending["order_id"], "reason": "no longer needed"}, "c"))
    with pytest.raises(ValueError, match="Invalid reason"):
        other = next(o for o in base.orders.values() if o["status"] == "pending" and o is not pending)
        run_call(st, ToolCall("cancel_pending_order", {"order_id": other["order_id"], "reason": "bored"}, "c"))
    assert st.orders.peek(other["order_id"])["status"] == "pending"
    assert run_call(st, ToolCall("find_user_id_by_email", {"email": "NOAH.BROWN7922@example.com"}, "e")) == "noah_brown_6181"
    assert run_call(st, ToolCall("calculate", {"expression": "(10 + 5) / 4"}, "k")) == "3.75"
    with pytest.raises(ValueError, match="Invalid characters"):
        run_call(st, ToolCall("calculate", {"expression": "2^3"}, "k"))
    delivered = next(o for o in base.orders.values() if o["status"] == "delivered")
    with pytest.raises(ValueError, match="Non-pending order cannot be modified"):
        run_call(st, ToolCall("modify_pending_order_address", {"order_id": delivered["order_id"], "address1": "a",
                                                               "address2": "", "city": "c", "state": "s", "country": "USA",
                                                               "zip": "1"}, "m"))
    assert base.orders[pending["order_id"]]["status"] == "pending"  # the base is untouched


# -- faithfulness to upstream's own code -------------------------------------------------------
class _NoExtra(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _upstream_modules(monkeypatch) -> tuple[types.ModuleType, types.ModuleType]:
    """Upstream's retail ``data_model`` and ``tools`` modules, imported with minimal stand-ins for
    the three tau2 modules they need that would pull toml/yaml/loguru/litellm. Test only."""
    from enum import Enum

    class ToolType(str, Enum):
        READ, WRITE, THINK, GENERIC = "read", "write", "think", "generic"

    def is_tool(tool_type=ToolType.READ):
        def mark(fn):
            fn.__tool_type__ = tool_type
            return fn
        return mark

    class ToolKitBase:
        def __init__(self, db=None):
            self.db = db

    stubs = {
        "tau2.environment.db": {"DB": _NoExtra},
        "tau2.environment.toolkit": {"ToolKitBase": ToolKitBase, "ToolType": ToolType, "is_tool": is_tool},
        "tau2.domains.retail.utils": {"RETAIL_DB_PATH": None},
    }
    for name, attrs in stubs.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    for name in ("tau2.domains.retail.data_model", "tau2.domains.retail.tools"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    heavy = ("litellm", "toml", "yaml", "loguru")
    loaded_before = {m for m in heavy if m in sys.modules}  # other tests may have imported yaml already
    import tau2.domains.retail.data_model as model
    import tau2.domains.retail.tools as tools

    monkeypatch.delitem(sys.modules, "tau2.domains.retail.data_model")
    monkeypatch.delitem(sys.modules, "tau2.domains.retail.tools")
    assert {m for m in heavy if m in sys.modules} == loaded_before, "upstream's modules pulled a heavy dependency"
    return model, tools


def _random_calls(rng: random.Random, base, n: int) -> list[ToolCall]:
    """Plausible write calls on random orders and users (many are refused, as an agent's would be)."""
    orders, users = list(base.orders.values()), list(base.users.values())
    calls = []
    for i in range(n):
        order, user = rng.choice(orders), rng.choice(users)
        owner = base.users[order["user_id"]]
        pm = rng.choice(list(owner["payment_methods"]))
        items = [it["item_id"] for it in order["items"]]
        picked = rng.sample(items, rng.randint(0, min(2, len(items))))
        new = [rng.choice(list(base.products[next(it["product_id"] for it in order["items"] if it["item_id"] == x)]["variants"]))
               for x in picked]
        address = {"address1": "1 Main St", "address2": "", "city": "X", "state": "NY", "country": "USA", "zip": "10001"}
        calls.append(rng.choice([
            ToolCall("cancel_pending_order", {"order_id": order["order_id"], "reason": rng.choice(["no longer needed", "ordered by mistake"])}, f"{i}"),
            ToolCall("exchange_delivered_order_items", {"order_id": order["order_id"], "item_ids": picked, "new_item_ids": new, "payment_method_id": pm}, f"{i}"),
            ToolCall("modify_pending_order_items", {"order_id": order["order_id"], "item_ids": picked, "new_item_ids": new, "payment_method_id": pm}, f"{i}"),
            ToolCall("modify_pending_order_payment", {"order_id": order["order_id"], "payment_method_id": pm}, f"{i}"),
            ToolCall("modify_pending_order_address", {"order_id": order["order_id"], **address}, f"{i}"),
            ToolCall("modify_user_address", {"user_id": user["user_id"], **address}, f"{i}"),
            ToolCall("return_delivered_order_items", {"order_id": order["order_id"], "item_ids": picked, "payment_method_id": pm}, f"{i}"),
        ]))
    return calls


def test_tools_and_hashes_equal_upstreams(monkeypatch, base, base_hash):
    """Our base DB is upstream's ``RetailDB.model_validate(db.json).model_dump()``, and our tools
    give upstream's outputs, errors and DB hashes, on every task's reference actions and on 300
    random write calls (replayed in 10 episodes). ``states_equal`` agrees with the hashes."""
    import json as _json

    model, upstream = _upstream_modules(monkeypatch)
    raw = _json.loads((data.data_dir() / "db.json").read_text())
    fresh = model.RetailDB.model_validate(raw)
    assert upstream_hash(fresh) == base_hash

    rng = random.Random(0)
    episodes = {f"task{t.id}": list(t.actions) for t in load_tasks("all")[::8]}
    episodes |= {f"random{i}": _random_calls(rng, base, 30) for i in range(10)}
    states, hashes = {}, {}
    for name, calls in episodes.items():
        ours, theirs = RetailState(base), fresh.model_copy(deep=True)
        toolkit = upstream.RetailTools(theirs)
        for call in calls:
            try:
                expected = getattr(toolkit, call.name)(**call.arguments)
                expected = expected if isinstance(expected, str) else _json.dumps(expected.model_dump(), default=str)
            except ValueError as err:
                expected = f"Error: {err}"
            try:
                got = run_call(ours, call)
            except ValueError as err:
                got = f"Error: {err}"
            assert got == expected, (name, call)
        states[name], hashes[name] = ours, upstream_hash(theirs)
        assert upstream_hash(ours) == hashes[name], name
    names = list(states)
    for a in names:
        for b in names:
            assert states_equal(states[a], states[b]) == (hashes[a] == hashes[b]), (a, b)
    assert len(set(hashes.values())) > 5


def test_error_observations_leave_state_unchanged():
    env = make_env()
    env.reset(seed=0, options={"task_id": "0"})
    bad = [
        {"name": "cancel_pending_order", "arguments": {"order_id": "#W2378156"}},  # missing
        {"name": "cancel_pending_order", "arguments": {"order_id": "#W2378156", "reason": "no longer needed", "x": 1}},
        {"name": "return_delivered_order_items", "arguments": {"order_id": "#W2378156", "item_ids": "1151293680",
                                                                "payment_method_id": "credit_card_9513926"}},  # mistyped
        {"name": "cancel_pending_order", "arguments": {"order_id": "#W0000000", "reason": "no longer needed"}},
        {"name": "cancel_pendng_order", "arguments": {}},  # unknown tool
        "<tool_call>{not json</tool_call>",
        {"name": "exchange_delivered_order_items", "arguments": {"order_id": "#W2378156", "item_ids": ["1151293680"],
                                                                  "new_item_ids": [], "payment_method_id": "credit_card_9513926"}},
        {"name": "calculate", "arguments": {"expression": "1/0"}},
    ]
    needles = ["missing required field 'reason'", "unexpected field 'x'", "expected array, got str", "Order not found",
               "Did you mean 'cancel_pending_order'", "invalid JSON", "should match", "division by zero"]
    for action, needle in zip(bad, needles):
        obs, reward, term, trunc, info = env.step(action)
        msg = obs[-1]
        assert msg["role"] == "tool" and msg["content"].startswith("Error:") and needle in msg["content"], msg
        assert env.state_fingerprint() == frozenset()
    assert info["tool_errors"] == len(bad) and not term


def test_scripted_user_is_a_labelled_stand_in_that_tells_the_task():
    user = ScriptedUser(max_user_turns=3)
    task = get_task("0")
    first = user.reset(task)
    assert "#W2378156" in first and "I am Yusuf Rossi in zip code 19122" in first  # reason_for_call + known_info
    assert "Yusuf Rossi" in user.respond([{"role": "assistant", "content": "Could you tell me your name and zip code?"}])
    assert user.respond([{"role": "assistant", "content": "Shall I proceed (yes/no)?"}]) == "Yes, please go ahead."
    assert user.respond([{"role": "assistant", "content": "Which switches?"}]) == "I am detail-oriented and want to make sure everything is addressed in one go."
    _, info = make_env().reset(seed=0, options={"task_id": "0"})
    assert info["user_simulator"] == "scripted-stand-in" and "Retail agent policy" in info["policy"]
    assert len(info["tools"]) == 15


def test_base_db_unchanged_after_fuzz(base, base_hash):
    """Random valid-looking and malformed calls through the env: episodes change their own state only."""
    env = make_env()
    rng = random.Random(1)
    changed = 0
    for i, task in enumerate(load_tasks("all")[:10]):
        env.reset(seed=i, options={"task_id": task.id})
        for call in _random_calls(rng, base, 8):
            obs, _, term, trunc, _ = env.step({"name": call.name, "arguments": call.arguments})
            if term or trunc:
                break
        changed += bool(env.state_fingerprint())
    assert changed > 0 and upstream_hash(base) == base_hash
    for t, k, dumped in env.state_fingerprint():
        assert dumped != canonical(getattr(base, t)[k])

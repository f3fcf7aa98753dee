"""The local trainer's evaluation path on AppWorld through the same interface as τ³-airline:
`sgcd-bench eval --env appworld --split fixture` with a tiny random model, the real AppWorld
engine behind its process boundary, and the fixture task (fixture numbers, not AppWorld's)."""

from __future__ import annotations

from typer.testing import CliRunner

from leaderboards.store import ResultStore
from sgcd_bench.cli import app
from tests.local.helpers import tiny_llama


def test_cli_eval_runs_an_appworld_episode(fixture_root, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("APPWORLD_ROOT", str(fixture_root))
    model_dir = tmp_path / "tiny"
    tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["eval", "--env", "appworld", "--split", "fixture", "--model", str(model_dir),
                                      "--out", str(out), "--max-turns", "2", "--max-new-tokens", "8"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    store = ResultStore(out / "results.sqlite")
    (run,) = store.runs(env="sgcd_envs/AppWorld-v0")
    assert run.method == "eval" and run.status == "finished" and run.split == "fixture"
    assert run.stand_ins.world and not run.stand_ins.user  # the fixture world; AppWorld has no user
    (episode,) = store.episodes(store.latest_evaluation(run.id).id)
    assert episode.task_id == "sgcdfixture_1"
    assert episode.reward == 0.0  # random weights do not solve it: AppWorld's tests failed
    assert episode.termination in {"max_steps", "max_turns"}

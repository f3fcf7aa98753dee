"""Leaderboards: the SQLite result store, the metrics, the tool-use collapse guard and the
terminal tables.

* :mod:`leaderboards.store` — :class:`ResultStore` (SQLite, WAL, one transaction per evaluation).
* :mod:`leaderboards.metrics` — pass@k (unbiased), pass^k, action / no-write pass rates,
  write calls per episode, tokens/s, AppWorld TGC / SGC.
* :mod:`leaderboards.collapse` — the tool-use collapse guard (silent collapse detector).
* :mod:`leaderboards.curves` — learning curves of stored training steps: a terminal plot
  (plotext) and a PNG (matplotlib), both imported on demand.
* :mod:`leaderboards.reference` — the SGCD paper's reported numbers, labelled as such.
* :mod:`leaderboards.tables` — rich tables per environment and Markdown / CSV / JSON export
  (imported on demand, so the store can be used without loading rich).

Dependencies: stdlib + rich (the curves: plotext, matplotlib); no torch. The tables read each
env's title, reference family and metrics from its registration in ``sgcd_envs`` (imported when a table is built; ``sgcd_envs``
imports nothing of ours, so there is no cycle); the store and the metrics import neither.
"""

from .collapse import (
    COLLAPSE_FLAG,
    CollapseGuard,
    CollapsePoint,
    CollapseThresholds,
    CollapseVerdict,
    observe,
    point_from_episodes,
    replay,
    replay_stored,
)
from .store import (
    EpisodeResult,
    EvaluationRecord,
    PendingMerge,
    ResultStore,
    RunRecord,
    SchemaVersionError,
    StandIns,
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    TrainStep,
)

__all__ = [
    "COLLAPSE_FLAG",
    "CollapseGuard",
    "CollapsePoint",
    "CollapseThresholds",
    "CollapseVerdict",
    "EpisodeResult",
    "EvaluationRecord",
    "PendingMerge",
    "ResultStore",
    "RunRecord",
    "SchemaVersionError",
    "StandIns",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "TrainStep",
    "observe",
    "point_from_episodes",
    "replay",
    "replay_stored",
]

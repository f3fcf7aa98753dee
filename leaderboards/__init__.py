"""Leaderboards: the SQLite result store, the metrics, the tool-use collapse guard and the
terminal tables.

* :mod:`leaderboards.store` — :class:`ResultStore` (SQLite, WAL, one transaction per evaluation).
* :mod:`leaderboards.metrics` — pass@k (unbiased), pass^k, action / no-write pass rates,
  write calls per episode, tokens/s, AppWorld TGC / SGC.
* :mod:`leaderboards.collapse` — the tool-use collapse guard (silent collapse detector).
* :mod:`leaderboards.reference` — the SGCD paper's reported numbers, labelled as such.
* :mod:`leaderboards.tables` — rich tables per environment and Markdown / CSV / JSON export
  (imported on demand, so the store can be used without loading rich).

Dependencies: stdlib + rich; no torch.
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
    StoreBusyError,
    StoreCorruptError,
    StoreError,
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
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "observe",
    "point_from_episodes",
    "replay",
    "replay_stored",
]

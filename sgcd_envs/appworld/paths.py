"""Where the AppWorld venv and data live, and the checks that raise one clear error each.

Imported by the env (``env.py``) and by ``setup.py``; it never imports AppWorld.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from sgcd_envs.appworld.errors import DATA_HINT, SETUP_COMMAND, AppWorldDataError, AppWorldVenvError

APPWORLD_VERSION = "0.1.3.post1"
"""The AppWorld release we drive (PyPI ``appworld``)."""
SPLITS = ("train", "dev", "test_normal", "test_challenge")
"""AppWorld's dataset names (``data/datasets/<split>.txt``)."""
VENV_ENV_VAR = "SGCD_APPWORLD_VENV"
"""Environment variable naming the AppWorld venv (default: ``.venv-appworld``)."""

_PROBE = (
    "import importlib.metadata as m, json, os, sys\n"
    "try:\n    v = m.version('appworld')\nexcept m.PackageNotFoundError:\n    v = None\n"
    "apps = None\n"
    "if v:\n    import importlib.util as u\n    s = u.find_spec('appworld')\n"
    "    apps = os.path.isdir(os.path.join(os.path.dirname(s.origin), 'apps', 'supervisor'))\n"
    "print(json.dumps({'version': v, 'apps_installed': apps, 'python': sys.version.split()[0]}))\n"
)


def default_venv_path() -> Path:
    """``$SGCD_APPWORLD_VENV``, else ``.venv-appworld`` in the sgcd-bench checkout, else in cwd."""
    if os.environ.get(VENV_ENV_VAR):
        return Path(os.environ[VENV_ENV_VAR]).expanduser().resolve()
    repo = Path(__file__).resolve().parents[2]  # the checkout, for an editable install
    base = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return base / ".venv-appworld"


def venv_python(venv: str | Path | None = None) -> Path:
    """The AppWorld venv's interpreter path (not checked)."""
    return Path(venv if venv is not None else default_venv_path()) / "bin" / "python"


def probe_venv(venv: str | Path | None = None) -> dict:
    """``{"version", "apps_installed", "python"}`` of the venv, or raise :class:`AppWorldVenvError`."""
    python = venv_python(venv)
    if not python.exists():
        raise AppWorldVenvError(f"No AppWorld venv at {python.parent.parent} (no {python}). Create it with: {SETUP_COMMAND}")
    result = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AppWorldVenvError(f"The AppWorld venv at {python.parent.parent} is broken ({result.stderr.strip()[-300:]}). "
                                f"Recreate it with: {SETUP_COMMAND}")
    return json.loads(result.stdout)


def check_venv(venv: str | Path | None = None) -> Path:
    """Return the venv's python if AppWorld is installed *and* unpacked; else raise one clear error."""
    info = probe_venv(venv)
    where = venv_python(venv).parent.parent
    if info["version"] is None:
        raise AppWorldVenvError(f"The venv {where} has no appworld package. Install it with: {SETUP_COMMAND}")
    if not info["apps_installed"]:
        raise AppWorldVenvError(f"AppWorld {info['version']} in {where} is not unpacked (`appworld install` not run). "
                                f"Fix it with: {SETUP_COMMAND}")
    return venv_python(venv)


def resolve_root(root: str | Path | None = None) -> Path:
    """The AppWorld root (the folder holding ``data/``): ``root`` or ``$APPWORLD_ROOT``."""
    if root is None:
        if not os.environ.get("APPWORLD_ROOT"):
            raise AppWorldDataError(f"No AppWorld data root given: APPWORLD_ROOT is not set and root=None. {DATA_HINT}")
        root = os.environ["APPWORLD_ROOT"]
    return Path(root).expanduser().resolve()


def check_data(root: str | Path | None, split: str | None = None) -> Path:
    """Check that ``root/data/tasks`` (and the split's task list) exist; return the root."""
    path = resolve_root(root)
    if not (path / "data" / "tasks").is_dir():
        hint = " (it contains tasks/: pass its parent folder)" if (path / "tasks").is_dir() else ""
        raise AppWorldDataError(f"No AppWorld data at {path}: {path / 'data' / 'tasks'} does not exist{hint}. {DATA_HINT}")
    if split is not None and not (path / "data" / "datasets" / f"{split}.txt").is_file():
        present = sorted(p.stem for p in (path / "data" / "datasets").glob("*.txt"))
        raise AppWorldDataError(f"AppWorld data at {path} has no split '{split}' "
                                f"(no data/datasets/{split}.txt; present: {present or 'none'}). {DATA_HINT}")
    if not os.access(path, os.W_OK):
        raise AppWorldDataError(f"AppWorld root {path} is not writable: AppWorld writes each episode's "
                                "outputs to <root>/experiments/outputs. Copy the data to a writable folder.")
    return path


def split_sizes(root: Path) -> dict[str, int]:
    """Number of task ids in each ``data/datasets/*.txt`` under ``root``."""
    folder = root / "data" / "datasets"
    return {p.stem: sum(1 for line in p.read_text().splitlines() if line.strip())
            for p in sorted(folder.glob("*.txt"))} if folder.is_dir() else {}


__all__ = ["APPWORLD_VERSION", "SPLITS", "VENV_ENV_VAR", "check_data", "check_venv", "default_venv_path",
           "probe_venv", "resolve_root", "split_sizes", "venv_python"]

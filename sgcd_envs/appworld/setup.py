"""Create and check the AppWorld venv; check for AppWorld data; build the fixture task.

AppWorld pins ``pydantic<2``, so it lives in its own venv and process
(``research/benchmarks.md`` §B). Command line (the same logic backs ``sgcd-bench appworld setup``)::

    python -m sgcd_envs.appworld.setup [--venv PATH] [--root DIR] [--build-fixture DIR]

It is idempotent: an existing venv with the pinned AppWorld and unpacked apps is only checked.
Nothing downloads AppWorld *data*: that comes from the user (``APPWORLD_ROOT``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sgcd_envs.appworld.errors import AppWorldDataError, AppWorldVenvError
from sgcd_envs.appworld.paths import (
    APPWORLD_VERSION,
    SPLITS,
    VENV_ENV_VAR,
    check_data,
    check_venv,
    default_venv_path,
    probe_venv,
    resolve_root,
    split_sizes,
    venv_python,
)

FIXTURE_SCRIPT = Path(__file__).with_name("fixture.py")

__all__ = ["APPWORLD_VERSION", "SPLITS", "SetupReport", "build_fixture", "check_data", "check_venv",
           "default_venv_path", "main", "probe_venv", "resolve_root", "setup_appworld", "split_sizes", "venv_python"]


@dataclass
class SetupReport:
    """What :func:`setup_appworld` found or did."""

    venv: str
    appworld_version: str
    created_venv: bool
    installed_package: bool
    unpacked_apps: bool
    seconds: float
    data_root: str | None = None
    splits: dict[str, int] = field(default_factory=dict)
    data_message: str = ""


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise AppWorldVenvError(f"`{' '.join(cmd)}` failed (exit {result.returncode}): "
                                f"{(result.stderr or result.stdout).strip()[-800:]}")


def setup_appworld(venv: str | Path | None = None, root: str | Path | None = None,
                   python: str | None = None) -> SetupReport:
    """Create the AppWorld venv if needed, install ``appworld==APPWORLD_VERSION``, run
    ``appworld install`` (offline: it decrypts the bundled app code into the venv), then
    report the data found under ``root`` / ``$APPWORLD_ROOT``. Idempotent."""
    start = time.monotonic()
    venv_path = Path(venv if venv is not None else default_venv_path()).expanduser().resolve()
    created = installed = unpacked = False
    if not venv_python(venv_path).exists():
        _run([python or sys.executable, "-m", "venv", str(venv_path)])
        created = True
    info = probe_venv(venv_path)
    if info["version"] != APPWORLD_VERSION:
        _run([str(venv_python(venv_path)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              f"appworld=={APPWORLD_VERSION}"])
        installed = True
        info = probe_venv(venv_path)
    if not info["apps_installed"]:
        # `appworld install` also copies AppWorld's own tests into APPWORLD_CACHE (default ~/.appworld).
        env = {**os.environ, "APPWORLD_CACHE": str(venv_path / "appworld-cache")}
        _run([str(venv_path / "bin" / "appworld"), "install"], env=env)
        unpacked = True
    check_venv(venv_path)
    report = SetupReport(str(venv_path), APPWORLD_VERSION, created, installed, unpacked, 0.0)
    try:
        data_root = check_data(root)
        report.data_root = str(data_root)
        report.splits = split_sizes(data_root)
        missing = [s for s in SPLITS if s not in report.splits]
        report.data_message = (f"AppWorld data found at {data_root}" +
                               (f"; missing splits: {', '.join(missing)}" if missing else ""))
    except AppWorldDataError as err:
        report.data_message = str(err)
    report.seconds = round(time.monotonic() - start, 1)
    return report


def build_fixture(root: str | Path, venv: str | Path | None = None, timeout: float = 300) -> str:
    """Build sgcd-bench's FIXTURE task (ours, not AppWorld's) under ``root/data``; return its id.

    The generated files derive from decrypted AppWorld code: keep them out of git."""
    root_path = Path(root).expanduser().resolve()
    root_path.mkdir(parents=True, exist_ok=True)
    python = check_venv(venv)
    env = {**os.environ, "APPWORLD_ROOT": str(root_path)}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([str(python), str(FIXTURE_SCRIPT), str(root_path)], capture_output=True, text=True,
                            env=env, cwd=str(root_path), timeout=timeout)
    if result.returncode != 0:
        raise AppWorldVenvError(f"building the fixture task failed: {result.stderr.strip()[-800:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["task_id"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sgcd_envs.appworld.setup", description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=None, help=f"venv path (default: ${VENV_ENV_VAR} or .venv-appworld)")
    parser.add_argument("--root", default=None, help="AppWorld root holding data/ (default: $APPWORLD_ROOT)")
    parser.add_argument("--python", default=None, help="interpreter (>=3.11) to create the venv from")
    parser.add_argument("--build-fixture", default=None, metavar="DIR",
                        help="also build sgcd-bench's fixture task (a stand-in, not AppWorld data) under DIR")
    args = parser.parse_args(argv)
    try:
        report = setup_appworld(args.venv, args.root, args.python)
        print(f"AppWorld {report.appworld_version} ready in {report.venv} ({report.seconds} s)")
        print(report.data_message)
        if args.build_fixture:
            task_id = build_fixture(args.build_fixture, report.venv)
            print(f"fixture task {task_id} (sgcd-bench's own, not AppWorld) built under {args.build_fixture}")
    except (AppWorldVenvError, AppWorldDataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

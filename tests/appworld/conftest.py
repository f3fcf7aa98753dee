"""AppWorld tests use the session fixtures ``appworld_python`` (the venv gate: skip without the
AppWorld venv, FAIL under ``SGCD_REQUIRE_APPWORLD=1``) and ``fixture_root`` (sgcd-bench's own
fixture task, built at test time; its numbers are never AppWorld numbers) from tests/conftest.py."""

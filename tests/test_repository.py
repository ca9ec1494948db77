"""The repository keeps its promises: CI runs the README's test command, Binder installs us, style."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_exactly_the_readme_test_command():
    tour, tests = readme_commands()[:2]
    assert "nbconvert" in tour
    assert "--output-dir notebooks/executed" in tour
    assert "pytest" in tests
    assert tests in [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]


def test_binder_requirements_install_the_project_first():
    lines = [ln for ln in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "-e ."


def test_readme_badge_opens_the_quickstart_in_jupyterlab():
    assert "?urlpath=lab/tree/notebooks/01-quickstart.ipynb" in (ROOT / "README.md").read_text()


def test_code_passes_ruff():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "nbtimeout", "tests", "benchmarks"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

"""Terminal IPython under ``%timeout N``, typed as a user types, in tmux (issue 16, point 8).

One Enter per complete input, multi-line inputs take the Enters they take without nbtimeout, and
``exit`` leaves IPython in signal and fork modes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from procs import wait_until

# CI sets NBTIMEOUT_REQUIRE_TMUX=1: there a missing tmux is a failure, not a skip.
_NO_TMUX = shutil.which("tmux") is None and not os.environ.get("NBTIMEOUT_REQUIRE_TMUX")
pytestmark = [pytest.mark.timeout(180), pytest.mark.skipif(_NO_TMUX, reason="needs tmux (apt-get install tmux)")]

IPYTHON = Path(sys.executable).with_name("ipython")


class Terminal:
    """IPython in a tmux pane: type into it, read its screen."""

    def __init__(self, home: Path) -> None:
        self.name = f"nbt-{uuid.uuid4().hex[:8]}"
        command = (f"env IPYTHONDIR={home} {IPYTHON} --no-banner --colors=nocolor --no-confirm-exit "
                   "--HistoryManager.enabled=False --TerminalInteractiveShell.autosuggestions_provider=None")
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "150", "-y", "60", command], check=True)
        subprocess.run(["tmux", "set-option", "-t", self.name, "remain-on-exit", "on"], check=True)
        self.prompts = 1
        assert self.wait_for("In [1]:")

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name, "-S", "-300"],
                              capture_output=True, text=True, check=True).stdout

    def wait_for(self, text: str, seconds: float = 30) -> bool:
        return wait_until(lambda: text in self.screen(), seconds)

    def keys(self, text: str = "", enters: int = 1) -> None:
        if text:
            subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)
        for _ in range(enters):
            subprocess.run(["tmux", "send-keys", "-t", self.name, "Enter"], check=True)

    def run(self, text: str, enters: int = 1) -> str:
        """Type ``text`` and Enter(s); what the screen shows between this prompt and the next."""
        self.keys(text, enters)
        self.prompts += 1
        assert self.wait_for(f"In [{self.prompts}]:"), self.screen()
        screen = self.screen()
        return screen[screen.rindex(f"In [{self.prompts - 1}]:"):screen.rindex(f"In [{self.prompts}]:")]

    def dead(self) -> bool:
        out = subprocess.run(["tmux", "display-message", "-p", "-t", self.name, "#{pane_dead}"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return out == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False)


@pytest.fixture
def terminal(tmp_path):
    term = Terminal(tmp_path)
    yield term
    term.close()


def typed_session(term: Terminal) -> list[str]:
    """The same inputs, typed the same way; what each showed."""
    return [
        term.run("1+1"),
        term.run("x = 41"),
        term.run("x + 1"),
        term.run("for i in range(2):"  "\r" "print(i * 10)", enters=2),  # the last Enter ends the block
        term.run("def f():\r" "return 'f'", enters=2),
        term.run("f()"),
    ]


def outputs(shown: list[str]) -> list[list[str]]:
    """The output lines of each input, prompts and continuation lines left out."""
    return [[line.strip() for line in text.splitlines()[1:] if line.strip() and not re.match(r"\s*\.\.\.:", line)]
            for text in shown]


@pytest.mark.parametrize("limit", ["%timeout 5", "%timeout 5 -m fork"])
def test_one_enter_per_complete_input_under_an_every_cell_limit(terminal, limit):
    assert "Out" not in terminal.run("%load_ext nbtimeout")
    before = outputs(typed_session(terminal))
    assert before[0] == ["Out[2]: 2"]
    assert "every cell: %%timeout 5" in terminal.run(limit)
    after = outputs(typed_session(terminal))
    renumbered = [[[re.sub(r"Out\[\d+\]", "Out", line) for line in out] for out in each] for each in (before, after)]
    assert renumbered[0] == renumbered[1], (before, after)
    assert renumbered[1][2] == ["Out: 42"]  # x = 41 and x + 1 were two inputs, not merged
    stopped = terminal.run(f"{limit.replace('5', '0.5')}")
    assert "every cell" in stopped
    assert "Stopped" in terminal.run("while True: pass")


@pytest.mark.parametrize("limit", ["%timeout 5", "%timeout 5 -m fork"])
@pytest.mark.parametrize("command", ["exit", "quit()"])
def test_exit_leaves_ipython_under_an_every_cell_limit(terminal, limit, command):
    terminal.run("%load_ext nbtimeout")
    terminal.run(limit)
    terminal.keys(command)
    assert wait_until(terminal.dead, 15), terminal.screen()


def test_await_cells_in_the_terminal_under_an_every_cell_limit(terminal):
    terminal.run("%load_ext nbtimeout")
    terminal.run("import asyncio")
    terminal.run("%timeout 5")
    assert "Out[4]: 'awaited'" in terminal.run("await asyncio.sleep(0.05, result='awaited')")
    stopped = terminal.run("%%timeout 0.5\rawait asyncio.sleep(5)", enters=3)  # as %%time takes, without nbtimeout
    assert "CellTimeoutError" in stopped
    assert "Out[6]: 2" in terminal.run("1 + 1")

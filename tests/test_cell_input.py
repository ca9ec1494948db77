"""``%timeout N`` changes what runs, never whether an input is complete, and ``exit`` still exits
(issue 16, point 8): through a real kernel's ``is_complete_request`` and execute replies."""

from __future__ import annotations

import pytest
from kernelclient import Kernel
from procs import wait_until

pytestmark = pytest.mark.timeout(120)

INPUTS = [
    "1+1", "", "x = 1\n", "for i in range(3):", "for i in range(3):\n    print(i)",
    "for i in range(3):\n    print(i)\n", "x = (1,", "def f():\n    return 1\n", "if True:\n    pass\nelse:",
    "%time 1", "!echo hi", "%%bash\necho hi", "%%bash\necho hi\n\n", "%%timeout 1\n1", "%timeout",
    "exit", "quit", "a = '''", "x = 1 \\", "print(", "1)", "await asyncio.sleep(0)", "async def g():",
]


def is_complete(kernel: Kernel, code: str) -> tuple[str, str | None]:
    msg_id = kernel.client.is_complete(code)
    reply = kernel.client.get_shell_msg(timeout=10)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.client.get_shell_msg(timeout=10)
    return reply["content"]["status"], reply["content"].get("indent")


@pytest.mark.parametrize("limit", ["3", "3 -m fork", "3 -c -q"])
def test_is_complete_answers_the_same_under_an_every_cell_limit(kernel, limit):
    without = {code: is_complete(kernel, code) for code in INPUTS}
    assert without["1+1"] == ("complete", None)
    assert without["for i in range(3):"][0] == "incomplete"
    assert kernel.run(f"%timeout {limit}").status == "ok"
    try:
        under = {code: is_complete(kernel, code) for code in INPUTS}
    finally:
        kernel.run("%timeout off")
    assert under == without


def exits(kernel: Kernel, code: str) -> None:
    result = kernel.run(code)
    assert result.status == "ok", result.traceback
    assert {"source": "ask_exit", "keepkernel": False} in result.reply["payload"]
    assert wait_until(lambda: not kernel.alive(), 10)  # ipykernel shuts down after such a cell


@pytest.mark.parametrize("limit", ["", "%timeout 3", "%timeout 3 -m fork"])
@pytest.mark.parametrize("command", ["exit", "quit", "exit()", "quit()"])
def test_exit_and_quit_exit_under_any_every_cell_limit(fresh_kernel, limit, command):
    assert fresh_kernel.run("%load_ext nbtimeout").status == "ok"
    if limit:
        assert fresh_kernel.run(limit).status == "ok"
    exits(fresh_kernel, command)


def test_a_name_exit_of_the_users_own_is_timed_like_any_cell(kernel):
    assert kernel.run("globals()['exit'] = 'mine'").status == "ok"  # 'exit = ...' is autocalled
    assert kernel.run("%timeout 0.3").status == "ok"
    try:
        assert kernel.run("exit").out == "'mine'"
        assert kernel.run("while True: exit").ename == "CellTimeoutError"
    finally:
        kernel.run("%timeout off")
        kernel.run("del exit")

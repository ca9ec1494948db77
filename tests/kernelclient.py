"""A real ipykernel driven through jupyter_client, read over iopub as a front end reads it."""

from __future__ import annotations

import os
import queue
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class Result:
    """What a front end saw for one execute request."""

    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["status"]

    @property
    def ename(self) -> str | None:
        return self.reply.get("ename")

    @property
    def evalue(self) -> str | None:
        return self.reply.get("evalue")

    @property
    def traceback(self) -> str:
        """The error output's traceback, ANSI colours removed."""
        import re

        text = "\n".join(line for m in self.of("error") for line in m["content"]["traceback"])
        return re.sub(r"\x1b\[[0-9;]*m", "", text)

    def of(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in types]

    def stream(self, name: str = "stdout") -> str:
        return "".join(m["content"]["text"] for m in self.of("stream") if m["content"]["name"] == name)

    @property
    def out(self) -> str | None:
        """``text/plain`` of the execute_result (``Out[n]``), or None."""
        results = self.of("execute_result")
        return results[-1]["content"]["data"]["text/plain"] if results else None

    def displays(self, mime: str = "text/plain") -> list[str]:
        """Displayed ``mime`` data, widget views (the countdown) left out: see ``widgets``."""
        return [m["content"]["data"][mime] for m in self.of("display_data", "update_display_data")
                if mime in m["content"]["data"] and WIDGET_VIEW not in m["content"]["data"]]

    def widgets(self, mime: str = "text/plain") -> list[str]:
        """``mime`` data of displayed widget views, in order (display, then its updates)."""
        return [m["content"]["data"][mime] for m in self.of("display_data", "update_display_data")
                if WIDGET_VIEW in m["content"]["data"]]


class Kernel:
    """One running kernel; ``run(code)`` returns the Result of executing ``code``."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.manager = KernelManager(kernel_name="python3")
        env = {**os.environ, **(extra_env or {})}
        self.manager.start_kernel(env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        return self.manager.provisioner.process.pid

    def run(self, code: str, timeout: float = 60, on_message: Any = None,
            limit: dict[str, Any] | None = None) -> Result:
        """Execute ``code``; ``limit``: a spec sent in the request's metadata, as ``nbtimeout run`` sends it."""
        from nbtimeout._run.request import execute

        return self._collect(execute(self.client, code, limit, allow_stdin=False), code, timeout, on_message)

    def run_answering(self, code: str, answers: list[str | None], timeout: float = 60) -> Result:
        """Run ``code`` with stdin allowed, answering each ``input_request`` with the next answer.

        An answer of None leaves that prompt unanswered. The prompts asked are in ``.prompts``,
        as ``(prompt, password)``, in order.
        """
        prompts: list[tuple[str, bool]] = []
        pending = list(answers)

        def answer_prompts() -> None:
            while self.client.stdin_channel.msg_ready():
                request = self.client.get_stdin_msg(timeout=1)
                if request["msg_type"] != "input_request":
                    continue
                prompts.append((request["content"]["prompt"], request["content"]["password"]))
                answer = pending.pop(0) if pending else None
                if answer is not None:
                    self.client.input(answer)

        msg_id = self.client.execute(code, allow_stdin=True)
        result = self._collect(msg_id, code, timeout, between=answer_prompts)
        result.prompts = prompts  # type: ignore[attr-defined]
        return result

    def _collect(self, msg_id: str, code: str, timeout: float, on_message: Any = None,
                 between: Any = None) -> Result:
        """Every iopub message of request ``msg_id`` until idle, then its reply. ``between`` is called
        every 50 ms while waiting (answering stdin)."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no idle status within {timeout}s for {code!r}")
            if between is not None:
                between()
            try:
                msg = self.client.get_iopub_msg(timeout=min(left, 0.05) if between else left)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if on_message is not None:
                on_message(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            messages.append(msg)
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=timeout)
        if reply["content"]["status"] == "error":
            # ipykernel 6 aborts execute requests after an error until a callback it queues once the
            # reply is out: a client as quick as this one can land its next cell in that window (a
            # person cannot). One round trip on the shell channel puts that callback ahead of it.
            self.kernel_info(timeout)
        return Result(reply["content"], messages)

    def value(self, expr: str) -> Any:
        """``expr`` evaluated in the kernel, sent back through repr and literal_eval."""
        import ast

        result = self.run(f"print(repr({expr}))")
        assert result.status == "ok", result.traceback
        return ast.literal_eval(result.stream().strip())

    def kernel_info(self, timeout: float = 30) -> dict[str, Any]:
        """The kernel's ``kernel_info_reply`` content."""
        msg_id = self.client.kernel_info()
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=timeout)
        return reply["content"]

    def create_subshell(self, timeout: float = 30) -> str:
        """A new kernel subshell (ipykernel 7, on the control channel); its ``subshell_id``. The test
        is skipped on a kernel that does not list subshells among its features (ipykernel 6)."""
        if "kernel subshells" not in self.kernel_info().get("supported_features", []):
            pytest.skip("this kernel has no subshells (ipykernel 7 added them)")
        request = self.client.session.msg("create_subshell_request", {})
        self.client.control_channel.send(request)
        while True:
            reply = self.client.get_control_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
                return reply["content"]["subshell_id"]

    def run_in_subshell(self, subshell_id: str, code: str, timeout: float = 60) -> Result:
        """``run(code)`` with ``subshell_id`` in the execute request's header: the cell runs there."""
        channel = self.client.shell_channel
        send = channel.send

        def to_subshell(msg: dict[str, Any]) -> None:
            msg["header"]["subshell_id"] = subshell_id
            send(msg)

        channel.send = to_subshell
        try:
            return self.run(code, timeout)
        finally:
            del channel.send  # the channel's own method again

    def interrupt(self) -> None:
        """The ■ button: SIGINT to the kernel's process group, as jupyter_client sends it.

        Not ``manager.interrupt_kernel()``: called from another thread or a message callback it
        leaves an event loop and a socket behind, whose ResourceWarnings fail a later test.
        """
        os.killpg(os.getpgid(self.pid), signal.SIGINT)

    def alive(self) -> bool:
        return self.manager.is_alive()

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

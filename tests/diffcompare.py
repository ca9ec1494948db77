"""What a front end sees of one cell, made comparable across two kernels, and the differences.

``view`` reduces a cell's messages, reply and namespace report (diffprobe.state) to plain data with
what must differ between two processes taken out (addresses, the kernels' own folders and cell
files); ``compare`` lists the aspects in which two views differ. nbtimeout's own displays (the
countdown and its record) are kept apart in ``ours``: a front end sees them, but they are the point
of the limit, not a change of the cell.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
_CELL_FILE = re.compile(r"/tmp/ipykernel_\d+/\d+\.py|<ipython-input-[^>]*>|\b\d{6,}\.py\b")
# A frame's header in IPython's traceback: "Cell In[3], line 2" or "File /path/x.py:12, in f(a)".
_FRAME = re.compile(r"^\s*(Cell In\[\d+\], line \d+|File [^\n]*?:\d+,? in [^\n]*|File [^\n]*?:\d+)\s*$", re.M)
OURS = "data-nbtimeout-slot"
NBTIMEOUT_FILE = re.compile(r"/nbtimeout/[\w/]+\.py")


@dataclass(frozen=True)
class Difference:
    """One aspect of one cell that differs: ``aspect`` names it, ``plain``/``limited`` are the two."""

    notebook: str
    index: int  # the cell's place in its notebook
    cell: str
    engine: str
    aspect: str
    plain: Any
    limited: Any


class Normaliser:
    """Takes out of text what differs between two kernels by nature: their folders, addresses."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            text = _ANSI.sub("", value).replace(self.folder, "<cwd>")
            return _ADDRESS.sub("0x…", _CELL_FILE.sub("<cell>", text))
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        return value


def frames(traceback: str) -> list[str]:
    """The frame headers of an IPython traceback, in order."""
    return [match.strip() for match in _FRAME.findall(traceback)]


def _data(content: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(content.get("data", {}).items()))


def view(result: Any, state: dict[str, Any] | None, norm: Normaliser) -> dict[str, Any]:
    """What a front end sees of ``result`` (kernelclient.Result) and what the namespace holds after."""
    outputs: list[Any] = []
    ours: list[Any] = []
    for msg in result.messages:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            if outputs and outputs[-1][0] == "stream" and outputs[-1][1] == content["name"]:
                outputs[-1][2] += content["text"]
            else:
                outputs.append(["stream", content["name"], content["text"]])
        elif kind in ("display_data", "update_display_data"):
            data = _data(content)
            (ours if OURS in str(data.get("text/html", "")) else outputs).append([kind, data])
        elif kind == "execute_result":
            outputs.append(["execute_result", _data(content)])
        elif kind == "error":
            outputs.append(["error", content["ename"]])
        elif kind == "clear_output":
            outputs.append(["clear_output"])
    traceback = "\n".join(line for m in result.of("error") for line in m["content"]["traceback"])
    reply = result.reply
    seen = {
        "status": reply["status"],
        "outputs": outputs,
        "ename": reply.get("ename"),
        "evalue": reply.get("evalue"),
        "frames": frames(norm(traceback)),
        "traceback": traceback,
        "payload": [{k: v for k, v in p.items() if k != "start"} for p in reply.get("payload", [])],
        "count": reply.get("execution_count"),
    }
    seen = norm(seen)
    seen["state"] = norm(state) if state is not None else None
    seen["ours"] = ours
    return seen


def compare(plain: dict[str, Any], limited: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(aspect, plain, limited) for each aspect that differs; the namespace report split by key."""
    found = []
    for key in ("status", "outputs", "ename", "evalue", "frames", "traceback", "payload", "count"):
        if plain[key] != limited[key]:
            found.append((key, plain[key], limited[key]))
    ps, ls = plain["state"], limited["state"]
    if ps is not None and ls is not None:  # an error cell has no report (ipykernel skips user expressions)
        found += _namespace(ps, ls)
    if limited["ours"]:
        found.append(("nbtimeout display", None, limited["ours"]))
    if NBTIMEOUT_FILE.search(limited["traceback"]):
        found.append(("nbtimeout frame", None, [f for f in limited["frames"] if "nbtimeout" in f]))
    return found


def _namespace(ps: dict[str, Any], ls: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Differences of two namespace reports. Identity (kept, rebound, shared) is compared only over
    names both sides hold: a name one side lacks is already a difference of its own."""
    found = []
    pn, ln = ps.get("names", {}), ls.get("names", {})
    for name in sorted(set(pn) | set(ln)):
        if pn.get(name) != ln.get(name):
            found.append((f"name {name}", pn.get(name), ln.get(name)))
    both = set(pn) & set(ln)
    for key in ("kept", "rebound"):
        a, b = set(ps.get(key, [])) & both, set(ls.get(key, [])) & both
        if a != b:
            found.append((key, sorted(a - b), sorted(b - a)))
    shared_p = sorted(g for g in (sorted(set(g) & both) for g in ps.get("shared", [])) if len(g) > 1)
    shared_l = sorted(g for g in (sorted(set(g) & both) for g in ls.get("shared", [])) if len(g) > 1)
    if shared_p != shared_l:
        found.append(("shared", shared_p, shared_l))
    for key in sorted(set(ps) | set(ls)):
        if key not in ("names", "kept", "rebound", "shared") and ps.get(key) != ls.get(key):
            found.append((key, ps.get(key), ls.get(key)))
    return found


def parse_state(reply: dict[str, Any], key: str = "state") -> dict[str, Any] | None:
    """The JSON report a user expression returned, or None (with the error) if it failed."""
    import ast

    entry = reply.get("user_expressions", {}).get(key)
    if not entry:
        return None  # not evaluated: the cell failed
    if entry.get("status") != "ok":
        return {"probe failed": entry.get("ename")}
    return json.loads(ast.literal_eval(entry["data"]["text/plain"]))

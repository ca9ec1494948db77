"""The differences between a cell run plain and under a limit that are known, each with its reason.

Every class names the issue point it belongs to; when a fix lands, its class stops matching and the
runner lists it under "known classes not seen": remove the entry then. A difference no class
matches is UNKNOWN and fails test_differential. A difference in a cell that comes after a known
difference of the namespace in the same notebook and engine, and matches no class itself, is put in
FOLLOW_ON (the earlier cell is reported under its own class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from diffcompare import Difference

STATE_ASPECTS = ("shared", "kept", "rebound", "gone", "name ")  # what later cells build on


@dataclass(frozen=True)
class Known:
    name: str
    reason: str  # why it differs, and the issue point that is to remove it
    engines: tuple[str, ...]
    matches: Callable[[Difference], bool]
    diverges: bool = False  # the notebook's state differs from here on: later unmatched ones are FOLLOW_ON


@dataclass(frozen=True)
class Classified:
    difference: Difference
    cls: Known


def _aspect(*names: str) -> Callable[[Difference], bool]:
    return lambda d: any(d.aspect == n or (n.endswith(" ") and d.aspect.startswith(n)) for n in names)


def _text(value: object) -> str:
    return value if isinstance(value, str) else repr(value)


def _has(text: str, *aspects: str) -> Callable[[Difference], bool]:
    """The limited side shows ``text`` in one of ``aspects`` (any aspect if none given)."""
    return lambda d: (not aspects or d.aspect in aspects) and text in _text(d.limited)


def _notes(outputs: object) -> tuple[object, list[str]]:
    """``outputs`` without the one-line ``nbtimeout: …`` notes on stderr, and those notes."""
    if not isinstance(outputs, list):
        return outputs, []
    kept, notes = [], []
    for out in outputs:
        if out[:2] == ["stream", "stderr"]:
            lines = out[2].splitlines(keepends=True)
            notes += [line for line in lines if line.startswith("nbtimeout: ")]
            rest = "".join(line for line in lines if not line.startswith("nbtimeout: "))
            if rest:
                kept.append(["stream", "stderr", rest])
        else:
            kept.append(out)
    return kept, notes


def _note(*words: str) -> Callable[[Difference], bool]:
    """Outputs that differ only by nbtimeout's stderr notes, one of which says one of ``words``."""
    def matches(d: Difference) -> bool:
        if d.aspect != "outputs":
            return False
        rest, notes = _notes(d.limited)
        return rest == d.plain and bool(notes) and any(w in n for n in notes for w in words)
    return matches


def _extra_frames(d: Difference) -> bool:
    """The limited traceback is the plain one with frames at the every-cell line ("line 1") added."""
    if d.aspect != "frames" or not d.limited:
        return False
    extra = list(d.limited)
    for frame in d.plain or []:
        if frame not in extra:
            return False
        extra.remove(frame)
    return all(f.endswith("line 1") or "nbtimeout" in f for f in extra)


def _semicolon(d: Difference) -> bool:
    return d.cell.rstrip().endswith(";") and d.aspect in ("outputs", "Out", "_") and (
        d.aspect != "outputs" or "execute_result" in _text(d.limited))


def _stop_iteration(d: Difference) -> bool:
    limited = _text(d.limited)
    return "generator raised StopIteration" in limited or "in drive(" in limited or (
        "StopIteration" in _text(d.plain) and "RuntimeError" in limited)


# Cells of the hand-written notebook whose answer depends on a setting an earlier cell made by magic.
_AFTER_SETTING = {"3.14159265", "1/0", "1\n2"}
ALL = ("signal", "thread", "fork")
KNOWN: list[Known] = [
    Known("every-cell line in In/_ih", "In[n] holds get_ipython().run_cell_magic('timeout', … --every-cell, …), "
          "not the cell as typed (issue 21: tracebacks/every-cell line, being fixed)", ALL,
          lambda d: d.aspect in ("In", "_", "Out", "outputs", "__", "name _ii") and "--every-cell" in _text(d.limited)),
    Known("every-cell line in traceback", "every error under %timeout starts at a frame for the added "
          "run_cell_magic line (issue 21: tracebacks, being fixed)", ALL,
          lambda d: _extra_frames(d) or (d.aspect in ("traceback", "outputs")
                                         and "run_cell_magic('timeout'" in _text(d.limited))),
    Known("skipping hidden frames line", "tracebacks gain '[... skipping hidden N frame]' where nbtimeout's "
          "frames were (issue 21: tracebacks start at the user's first frame, being fixed)", ALL,
          lambda d: d.aspect == "traceback" and "skipping hidden" in _text(d.limited)
          and "skipping hidden" not in _text(d.plain)),
    Known("SyntaxError through nbtimeout", "a cell that does not compile shows ten frames of IPython and "
          "nbtimeout before the SyntaxError (issue 21: none of nbtimeout's frames, being fixed)", ALL,
          lambda d: d.aspect in ("frames", "nbtimeout frame", "traceback") and "in compile_cell" in _text(d.limited)),
    Known("ast_node_interactivity ignored", "with %config ZMQInteractiveShell.ast_node_interactivity = 'all' "
          "only the last value is shown: the body is compiled as one last expression (found by this runner: "
          "issue 21, the cell is not the cell that was typed)", ("signal", "thread"),
          lambda d: d.cell == "1\n2" and d.aspect in ("outputs", "Out", "_")),
    Known("; not honoured", "a trailing ; no longer hides the result, Out/_ set (issue 21: trailing ;, being fixed)",
          ALL, _semicolon, diverges=True),
    Known("StopIteration -> RuntimeError", "next(iter([])) raises RuntimeError from inkernel.drive (issue 21: "
          "StopIteration, being fixed)", ALL,
          lambda d: d.aspect in ("outputs", "ename", "evalue", "frames", "traceback", "nbtimeout frame")
          and _stop_iteration(d)),
    Known("countdown slot left", "a cell over countdown_after (1 s) shows the countdown; the finished cell leaves "
          "an empty data-nbtimeout-slot div (issue 21: messages, empty slot, being fixed)", ALL,
          lambda d: d.aspect == "nbtimeout display"),
    Known("fork: await cell on signal", "a cell that awaits runs on the signal engine and says so on stderr "
          "(by design: DEVELOPING, await cells)", ("fork",), _note("this cell awaits")),
    Known("fork: not carried back", "what the child cannot send back (generators, threads, identity of deep "
          "objects) is named in one stderr line (by design: DEVELOPING, fork faithful)", ("fork",),
          _note("not carried back from the fork child")),
    Known("fork: value left in child", "a value named in the stderr note is missing (or a copy) in the kernel, "
          "so later cells differ (by design: DEVELOPING, fork faithful)", ("fork",),
          lambda d: d.aspect.startswith("name ") and d.limited is None, diverges=True),
    Known("fork: comes back as a pickled copy", "a changed object comes back through pickle, which drops or "
          "expands parts: np.ma's mask=False becomes a full mask, exec's __builtins__ in a user dict is lost, "
          "a memoryview becomes bytes (found by this runner: reported to the lead, fork faithful)", ("fork",),
          lambda d: d.aspect.startswith("name ") and d.plain is not None and d.limited is not None, diverges=True),
    Known("fork: decimal context lost", "getcontext().prec/.traps set in a fork cell do not reach the kernel "
          "(found by this runner: reported to the lead; procstate does not carry decimal's context)", ("fork",),
          lambda d: d.notebook == "_pydecimal", diverges=True),
    Known("fork: assignment to _ lost", "'_ = value' in a fork cell leaves the kernel's _ as it was "
          "(found by this runner: reported to the lead)", ("fork",),
          lambda d: d.aspect == "_" and d.cell.lstrip().startswith("_ ="), diverges=True),
    Known("warnings registry", "__warningregistry__ (a module-level dict the warnings machinery keeps): its "
          "'version' counts filter changes and it is replaced when they change; the limit's own filter "
          "changes touch it (harmless; nobody reads it)", ALL,
          lambda d: d.aspect == "name __warningregistry__" or (
              d.aspect in ("kept", "rebound") and set(d.plain) | set(d.limited) == {"__warningregistry__"})),
    Known("displayhook inside a cell does not set _", "code that runs compile(..., 'single') itself (doctest's "
          "runner) no longer sets _ through sys.displayhook under a limit (found by this runner: reported to "
          "the lead, issue 21: the cell is not the cell that was typed)", ("signal", "thread"),
          lambda d: d.aspect == "_" and d.limited == "None" and d.notebook == "doctest", diverges=True),
    Known("fork: pager payload lost", "?, ?? and %pinfo show nothing: the child's page payload is not "
          "carried back (found by this runner: reported to the lead, issue 21 follow-up)", ("fork",),
          lambda d: d.aspect == "payload" and d.limited == []),
    Known("fork: magic settings lost", "%precision/%xmode/%config made in a fork cell do not reach the kernel "
          "(found by this runner: reported to the lead, issue 21 follow-up)", ("fork",),
          lambda d: d.notebook == "ipython-syntax" and d.cell in _AFTER_SETTING, diverges=True),
]

UNKNOWN = Known("UNKNOWN", "no class explains it: a new bug, or a class to add here", ALL, lambda d: True)
FOLLOW_ON = Known("follow-on", "an earlier cell of the notebook already differed in its namespace", ALL,
                  lambda d: True)


def classify(differences: list[Difference]) -> list[Classified]:
    """Each difference with the first known class that matches it, FOLLOW_ON, or UNKNOWN."""
    out = []
    first: dict[tuple[str, str], int] = {}  # (notebook, engine) -> first cell whose state diverged
    for d in sorted(differences, key=lambda d: (d.notebook, d.engine, d.index)):
        cls = next((k for k in KNOWN if d.engine in k.engines and k.matches(d)), None)
        key = (d.notebook, d.engine)
        if cls is None:
            cls = FOLLOW_ON if key in first and first[key] < d.index else UNKNOWN
        if cls.diverges or (cls is not FOLLOW_ON and _aspect(*STATE_ASPECTS)(d)):
            first.setdefault(key, d.index)
        out.append(Classified(d, cls))
    return out

"""Stops at unlucky moments (issue 21): hypothesis fires short limits into code that swallows,
suspends, holds the GIL or prints, and every stop must keep every promise (tests/stopfuzz.py).

The seed is fixed (``derandomize``), so CI runs the same programs every time. NBTIMEOUT_FUZZ_STOPS
scales the stops per family (default: 36 on signal and thread, 14 on fork: over 1,000 in all).
A (engine, family) that fails today is marked xfail with the issue point (reported as XFAIL/XPASS in
the summary: when a fix lands it shows as XPASS and its entry is to be removed).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from stopfuzz import FAMILIES, FuzzKernel, programs

STOPS = int(os.environ.get("NBTIMEOUT_FUZZ_STOPS", "36"))
PER_ENGINE = {"signal": STOPS, "thread": STOPS, "fork": max(1, STOPS * 14 // 36)}

# (engine, family) -> the issue point that is to make it pass: each failed on this code. Not strict,
# since a stop that is only slow may pass on a quiet machine: the -ra summary lists each XFAIL/XPASS,
# so a fix shows as XPASS and its entry is to be removed. (fork __del__/suppress and signal prints
# also overran the bound, 1.2-3 s, while ~7 test runs shared two cores; on their own they pass.)
_SWALLOW = "issue 21, a stop that code swallows (hang): after the grace the stop must escape any handler"
KNOWN: dict[tuple[str, str], str] = {
    **{(engine, family): _SWALLOW for engine in ("signal", "thread")
       for family in ("bare-except", "except-baseexception", "suppress", "generator-swallows", "finally-return")},
    ("signal", "__del__"): "issue 21, a stop that lands in __del__ is ignored (hang)",
    ("thread", "__del__"): "issue 21, a stop that lands in __del__ is ignored (hang)",
    ("signal", "c-first"): "issue 21, a GIL-holding C call as a cell's first statement: the line after it runs, "
                           "nbtimeout frame in the traceback",
    ("thread", "c-first"): "issue 21, a GIL-holding C call as a cell's first statement: the line after it runs, "
                           "nbtimeout frame in the traceback",
}
# Not a stop at all: a typed %%timeout -m fork cell that awaits is refused (UsageError), by design.
NOT_APPLICABLE = {("fork", "coroutine")}


@pytest.fixture(scope="module", params=sorted(PER_ENGINE))
def fuzz(request):
    kernel = FuzzKernel(request.param)
    yield kernel
    print(f"{request.param}: {kernel.stops} stops, {kernel.restarts} kernel restarts")
    kernel.close()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_stop_keeps_its_promises(fuzz, family, request):
    if (fuzz.engine, family) in NOT_APPLICABLE:
        pytest.skip("a fork child cannot await on the kernel's loop: the cell is refused, by design")
    reason = KNOWN.get((fuzz.engine, family))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))

    @settings(max_examples=PER_ENGINE[fuzz.engine], derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(programs(family))
    def stop_keeps_promises(program):
        broken = fuzz.stop(program)
        assert not broken, f"{broken}\n{program['body']}"

    stop_keeps_promises()

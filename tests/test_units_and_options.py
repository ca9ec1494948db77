"""In-process: durations, sizes and the ``%%timeout`` argument parser, without a kernel."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbtimeout._notebook.magic import TimeoutMagics
from nbtimeout._notebook.options import Options, parse, resolve
from nbtimeout._notebook.widget import elapsed_text
from nbtimeout._units import MAX_GRACE, MAX_LIMIT, MAX_WAIT, format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("5.01", 5.01), ("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0),
    ("0.25", 0.25), (".5", 0.5), ("1e-2", 0.01), ("2 s", 2.0), (" 3min ", 180.0), ("250MS", 0.25),
    (5.01, 5.01), (2, 2.0), ("10sec", 10.0),
])
def test_durations_with_and_without_units(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "nan", "NaN", "inf", "-inf", "infinity", "1e400", "0", "0.0", "0ms", "-1", "-0.5s",
    "abc", "", "1x", "5 minutes", "1.2.3", "s", "ms", "1 1",
    float("nan"), float("inf"), 0, -1, 0.0,
])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="limit") as info:
        parse_duration(text, "limit")
    message = str(info.value)
    assert "\n" not in message
    assert "500ms" in message  # says what a good value looks like


def test_bool_is_not_a_duration():
    with pytest.raises(ValueError, match="limit"):
        parse_duration(True, "limit")


def test_refusal_names_what_was_wrong():
    with pytest.raises(ValueError, match=r"--grace 'nan' must be finite and greater than zero"):
        parse_duration("nan", "--grace")
    with pytest.raises(ValueError, match=r"limit 'abc' is not a positive number"):
        parse_duration("abc", "limit")


@pytest.mark.parametrize(("text", "nbytes"), [
    ("512MB", 512 << 20), ("2GB", 2 << 30), ("1k", 1024), ("1KiB", 1024), ("100", 100), (4096, 4096),
    ("1.5g", int(1.5 * (1 << 30))),
])
def test_sizes(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("text", ["0MB", "-1GB", "nan", "infGB", "lots", "1 parsec", True])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError, match="memory"):
        parse_size(text)


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.25, "250 ms"), (0.2, "200 ms"), (5.01, "5.01 s"), (2, "2 s"), (90, "1 min 30 s"), (3600, "1 h"),
    (3599.6, "1 h"), (12000, "3 h 20 min"), (2 * 86400 + 4 * 3600, "2 d 4 h"), (1e300, "1.16e+295 d"),
])
def test_format_duration(seconds, shown):
    assert format_duration(seconds) == shown


def test_format_size():
    assert format_size(512 << 20) == "512 MB"
    assert format_size(100) == "100 B"
    assert format_size(2 << 30) == "2 GB"


# --- the %%timeout argument parser ---------------------------------------------------------------

def options(line: str, default_mode: str = "signal") -> Options:
    return resolve(parse(TimeoutMagics.timeout, line), default_mode, 1.0, False)


def test_defaults():
    assert options("5.01") == Options(limit=5.01, mode="signal", keep_going=False, grace=1.0,
                                      memory=None, quiet=False)


def test_every_option():
    got = options("2m -m fork -c -g 500ms --memory 512MB -q")
    assert got == Options(limit=120.0, mode="fork", keep_going=True, grace=0.5, memory=512 << 20, quiet=True)
    assert options("1 --continue --quiet --mode signal") == Options(1.0, "signal", True, 1.0, None, True)


def test_default_mode_setting_applies_and_the_cell_wins():
    assert options("1", default_mode="fork").mode == "fork"
    assert options("1 -m signal", default_mode="fork").mode == "signal"
    assert options("1 -m thread").mode == "thread"
    assert options("1", default_mode="auto").mode == "auto"  # the engine is picked where the cell runs
    # --memory is fine when the default engine is fork
    assert options("1 --memory 1GB", default_mode="fork").memory == 1 << 30


@pytest.mark.parametrize(("line", "says"), [
    ("abc", "limit 'abc' is not"),
    ("-1", "must be finite and greater than zero"),
    ("0", "must be finite and greater than zero"),
    ("nan", "must be finite and greater than zero"),
    ("inf", "must be finite and greater than zero"),
    ("", "give a time limit"),
    ("1 --bogus", "unrecognized arguments: --bogus"),
    ("1 -m threads", "invalid choice: 'threads'"),
    ("1 extra words", "unrecognized arguments: extra words"),
    ("1 --memory 1GB", "--memory works only with --mode fork"),
    ("1 -g abc", "--grace 'abc' is not"),
    ("1 -m fork -g nan", "--grace 'nan' must be finite"),
    ("1 -m fork --memory lots", "memory 'lots' is not"),
    ("1 'unclosed", "No closing quotation"),
])
def test_misuse_is_one_line_usage_error(line, says):
    with pytest.raises(UsageError) as info:
        options(line)
    message = str(info.value)
    assert says in message
    assert message.startswith("%%timeout: ")
    assert "\n" not in message


def test_the_longest_limit_and_grace_fit_every_wait_nbtimeout_makes():
    import threading

    assert MAX_LIMIT + MAX_GRACE <= MAX_WAIT <= threading.TIMEOUT_MAX
    assert MAX_WAIT <= (2**31 - 1) / 1000  # epoll/poll: a C int of milliseconds
    assert parse_duration(MAX_LIMIT) == MAX_LIMIT


@pytest.mark.parametrize("text", ["700h", "1e10", "1e300", "30d", 1e10, MAX_LIMIT * 1.01])
def test_a_limit_longer_than_can_be_waited_for_is_refused_in_one_line(text):
    with pytest.raises(ValueError, match=r"is longer than nbtimeout can wait for: at most 20 d$") as info:
        parse_duration(text, "limit")
    assert len(str(info.value)) < 120


@pytest.mark.parametrize(("line", "limit"), [
    ("5 s", 5.0), ("5 # a comment", 5.0), ("5s  # a comment with -m fork in it", 5.0), ("500 ms -q", 0.5),
    ("2 min -m fork --memory 2 GB", 120.0),
])
def test_a_unit_apart_and_a_trailing_comment_are_taken(line, limit):
    assert options(line).limit == limit
    if "GB" in line:
        assert options(line).memory == 2 << 30


def test_an_option_value_that_starts_with_a_dash_is_refused_for_its_value():
    with pytest.raises(UsageError, match=r"^%%timeout: --memory '-1GB' must be finite and greater than zero"):
        options("1 -m fork --memory -1GB")
    with pytest.raises(UsageError, match=r"^%%timeout: --grace '-1' must be finite and greater than zero"):
        options("1 -g -1")


def test_a_grace_longer_than_a_day_is_refused():
    with pytest.raises(UsageError, match=r"--grace '2d' is not|--grace '25h' is longer"):
        options("1 -g 25h")


@pytest.mark.parametrize(("elapsed", "shown"), [
    (0.25, "250 ms"), (1.26, "1.3 s"), (59.94, "59.9 s"), (89.405, "1 min 29 s"), (4000, "1 h 7 min"),
])
def test_a_countdown_counts_each_number_on_its_own_scale(elapsed, shown):
    assert elapsed_text(elapsed) == shown

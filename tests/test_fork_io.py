"""A fork cell talks like the kernel (issue 12): comms and widgets, prompts, files, kernel threads.

Every test runs in a real kernel and compares with what the same code does without the magic
where that is the point.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time

import pytest
from kernelclient import WIDGET_VIEW, Kernel, Result
from procs import children, wait_until

pytestmark = pytest.mark.timeout(120)


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module", autouse=True)
def _imports(kernel):
    setup = ("import os, sys, time, getpass, nbtimeout\nimport ipywidgets as widgets\n"
             "from IPython.display import display")
    assert kernel.run(setup, timeout=120).status == "ok"


@pytest.fixture(autouse=True)
def _no_child_left(kernel):
    """After every test (prompts abandoned, interrupts, stops included) the kernel has no child left."""
    yield
    assert wait_until(lambda: not children(kernel.pid)), children(kernel.pid)


def opened(result: Result, model: str | None = None) -> list[dict]:
    """comm_open contents (of widgets of ``model``, e.g. 'IntProgressModel')."""
    found = [m["content"] for m in result.of("comm_open")]
    if model is not None:
        found = [c for c in found if c["data"].get("state", {}).get("_model_name") == model]
    return found


def updates(result: Result, comm_id: str, key: str = "value") -> list:
    """The values of ``key`` the kernel's iopub sent to ``comm_id``, in order."""
    return [m["content"]["data"]["state"][key] for m in result.of("comm_msg")
            if m["content"]["comm_id"] == comm_id and key in m["content"]["data"].get("state", {})]


def kernel_comms(kernel: Kernel) -> set[str]:
    return set(kernel.value("list(get_ipython().kernel.comm_manager.comms)"))


# --- comms: widgets, tqdm.auto, nested limits ------------------------------------------------------

def test_tqdm_auto_bar_renders_and_moves_in_a_fork_cell(kernel):
    result = kernel.run(cell("""
        %%timeout 20 -m fork -q
        from tqdm.auto import tqdm
        for i in tqdm(range(5), mininterval=0):
            time.sleep(0.02)
        print('done')
        """))
    assert result.status == "ok", result.traceback
    assert result.stream() == "done\n"
    bars = opened(result, "FloatProgressModel")
    assert len(bars) == 1
    assert updates(result, bars[0]["comm_id"])[-1] == 5
    # the bar's box is displayed: a widget view of an opened comm, sent after it was opened
    views = [json.loads(json.dumps(m["content"]["data"][WIDGET_VIEW])) for m in result.of("display_data")
             if WIDGET_VIEW in m["content"]["data"]]
    boxes = {c["comm_id"] for c in opened(result, "HBoxModel")}
    assert [v["model_id"] for v in views] == list(boxes)
    assert result.messages.index(next(m for m in result.of("comm_open")
                                      if m["content"]["comm_id"] in boxes)) < result.messages.index(
        result.of("display_data")[0])


def test_tqdm_auto_nested_bars(kernel):
    result = kernel.run(cell("""
        %%timeout 20 -m fork -q
        from tqdm.auto import tqdm
        for i in tqdm(range(2), desc='outer', mininterval=0):
            for j in tqdm(range(3), desc='inner', leave=False, mininterval=0):
                pass
        """))
    assert result.status == "ok", result.traceback
    bars = opened(result, "FloatProgressModel")
    assert len(bars) == 3  # outer, and inner twice
    finals = [updates(result, b["comm_id"])[-1] for b in bars]
    assert sorted(finals) == [2, 3, 3]


def test_slider_updated_in_a_loop_stays_with_its_last_state(kernel):
    before = kernel_comms(kernel)
    result = kernel.run(cell("""
        %%timeout 20 -m fork -q
        s = widgets.IntSlider(max=100)
        display(s)
        for v in range(1, 21):
            s.value = v
        """))
    assert result.status == "ok", result.traceback
    (slider,) = opened(result, "IntSliderModel")
    assert updates(result, slider["comm_id"]) == list(range(1, 21))
    assert not result.of("comm_close")  # the view stays: nothing closed it
    # the kernel keeps a record, so what the front end sends it later is not an error
    assert slider["comm_id"] in kernel_comms(kernel) - before
    msg = kernel.client.session.msg("comm_msg", {"comm_id": slider["comm_id"],
                                                 "data": {"method": "update", "state": {"value": 7}}})
    kernel.client.shell_channel.send(msg)
    close = kernel.client.session.msg("comm_close", {"comm_id": slider["comm_id"], "data": {}})
    kernel.client.shell_channel.send(close)
    assert kernel.run("1").status == "ok"  # the kernel is fine after both
    assert slider["comm_id"] not in kernel_comms(kernel)


def test_widget_closed_in_the_child_is_forgotten_by_the_kernel(kernel):
    result = kernel.run(cell("""
        %%timeout 20 -m fork -q
        w = widgets.IntText(3)
        w.close()
        """))
    assert result.status == "ok", result.traceback
    (text,) = opened(result, "IntTextModel")
    assert [m["content"]["comm_id"] for m in result.of("comm_close")] == [text["comm_id"]]
    assert text["comm_id"] not in kernel_comms(kernel)


def test_output_widget_captures_the_prints_made_inside_it(kernel):
    """Order across the Pipe and fd 1: the Output widget's msg_id is set before the print."""
    result = kernel.run(cell("""
        %%timeout 20 -m fork -q
        out = widgets.Output()
        display(out)
        print('before')
        with out:
            print('inside')
        print('after')
        """))
    assert result.status == "ok", result.traceback
    (output,) = opened(result, "OutputModel")
    msg_ids = updates(result, output["comm_id"], "msg_id")
    assert msg_ids[0] == result.messages[0]["parent_header"]["msg_id"]
    assert msg_ids[-1] == ""

    def where(pred):
        return next(i for i, m in enumerate(result.messages) if pred(m))

    def sets(value):
        return lambda m: (m["msg_type"] == "comm_msg"
                          and m["content"]["data"].get("state", {}).get("msg_id") == value)

    def says(text):
        return lambda m: m["msg_type"] == "stream" and text in m["content"]["text"]

    assert where(says("before")) < where(sets(msg_ids[0])) < where(says("inside")) < where(sets(""))
    assert where(sets("")) < where(says("after"))


def test_prints_interleaved_with_widget_updates_keep_their_order(kernel):
    result = kernel.run(cell("""
        %%timeout 20 -m fork -q
        p = widgets.IntProgress(max=3)
        display(p)
        for i in range(1, 4):
            print(f'step {i}')
            p.value = i
        """))
    assert result.status == "ok", result.traceback
    events = []
    for m in result.messages:
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout":
            events += [line for line in m["content"]["text"].splitlines() if line]
        elif m["msg_type"] == "comm_msg" and "value" in m["content"]["data"].get("state", {}):
            events.append(m["content"]["data"]["state"]["value"])
    assert events == ["step 1", 1, "step 2", 2, "step 3", 3]


def test_nested_timeout_cells_show_their_countdown(kernel):
    result = kernel.run(cell("""
        %%timeout 30 -m fork -q
        ip = get_ipython()
        ip.run_cell_magic('timeout', '5', 'time.sleep(1.3)\\nx = 1')
        ip.run_cell_magic('timeout', '5 -m fork', 'time.sleep(1.3)\\nprint("inner fork")\\ny = 2')
        """))
    assert result.status == "ok", result.traceback
    assert "inner fork" in result.stream()
    # the countdown: a display updated in place, or a widget's label
    shown = result.displays() + result.widgets() + [
        m["content"]["data"]["state"]["value"] for m in result.of("comm_open", "comm_msg")
        if isinstance(m["content"]["data"].get("state", {}).get("value"), str)]
    for engine in ("signal", "fork"):
        mine = [text for text in shown if engine in text]
        assert any("1." in text and "5 s" in text for text in mine), shown  # counting, then finished
    assert kernel.value("(x, y)") == (1, 2)


def test_map_inside_a_fork_cell_shows_its_grid_and_returns(kernel):
    result = kernel.run(cell("""
        %%timeout 60 -m fork -q
        def square(v):
            return v * v
        squares = nbtimeout.map(square, range(4), timeout=10, workers=2).values()
        """))
    assert result.status == "ok", result.traceback
    assert opened(result, "HTMLModel"), "no map grid widget"
    assert kernel.value("squares") == [0, 1, 4, 9]


def test_tqdm_auto_in_map_tasks(kernel):
    result = kernel.run(cell("""
        from tqdm.auto import tqdm
        def count(n):
            return sum(1 for _ in tqdm(range(n), mininterval=0))
        counted = nbtimeout.map(count, [2, 3], timeout=20, workers=2).values()
        """))
    assert result.status == "ok", result.traceback
    bars = opened(result, "FloatProgressModel")
    assert sorted(updates(result, b["comm_id"])[-1] for b in bars) == [2, 3]
    assert kernel.value("counted") == [2, 3]


def test_a_fork_child_cannot_use_the_kernels_other_sockets(kernel):
    result = kernel.run(cell("""
        %%timeout 10 -m fork -q
        k = get_ipython().kernel
        k.session.send(k.stdin_socket, 'input_request', {'prompt': '', 'password': False})
        """))
    assert result.ename == "RuntimeError"
    assert "cannot use the kernel's shell or stdin sockets" in result.evalue


# --- prompts: input(), getpass(), IPython's own ----------------------------------------------------

@pytest.mark.parametrize("magic", ["", "%%timeout 20 -m fork -q\n"])
def test_input_prompts_in_the_notebook_as_in_the_kernel(kernel, magic):
    result = kernel.run_answering(magic + "name = input('name? ')\nprint('hello', name)", ["Ada"])
    assert result.status == "ok", result.traceback
    assert result.prompts == [("name? ", False)]
    assert result.stream() == "hello Ada\n"
    assert kernel.value("name") == "Ada"


def test_getpass_prompts_as_a_password(kernel):
    result = kernel.run_answering(cell("""
        %%timeout 20 -m fork -q
        secret = getpass.getpass('token: ')
        """), ["s3cret"])
    assert result.status == "ok", result.traceback
    assert result.prompts == [("token: ", True)]
    assert kernel.value("secret") == "s3cret"


def test_input_inside_a_function_called_twice_with_output_between(kernel):
    result = kernel.run_answering(cell("""
        %%timeout 20 -m fork -q
        def ask(what):
            print(f'asking {what}')
            return input(f'{what}: ')
        pair = (ask('a'), ask('b'))
        """), ["1", "2"])
    assert result.status == "ok", result.traceback
    assert result.prompts == [("a: ", False), ("b: ", False)]
    assert result.stream() == "asking a\nasking b\n"
    assert kernel.value("pair") == ("1", "2")


def test_ipython_yes_no_prompt(kernel):
    result = kernel.run_answering(cell("""
        %%timeout 20 -m fork -q
        yes = get_ipython().ask_yes_no('Proceed?')
        """), ["y"])
    assert result.status == "ok", result.traceback
    assert [p[0][:8] for p in result.prompts] == ["Proceed?"]
    assert kernel.value("yes") is True


@pytest.mark.parametrize("call", ["input('x')", "getpass.getpass('x')"])
def test_no_stdin_raises_what_the_kernel_raises(kernel, call):
    plain = kernel.run(call)  # kernel.run sends allow_stdin=False
    forked = kernel.run(f"%%timeout 20 -m fork -q\n{call}")
    assert plain.ename == "StdinNotImplementedError"
    assert (forked.ename, forked.evalue) == (plain.ename, plain.evalue)


def test_end_of_input_raises_eoferror_as_in_the_kernel(kernel):
    result = kernel.run_answering("%%timeout 20 -m fork -q\ninput('more? ')", ["\x04"])
    assert result.ename == "EOFError"


@pytest.mark.parametrize("mode", ["signal", "fork"])
def test_time_at_an_unanswered_prompt_counts_against_the_limit(kernel, mode):
    started = time.monotonic()
    result = kernel.run_answering(f"%%timeout 1 -m {mode} -q\ninput('never answered: ')", [None])
    elapsed = time.monotonic() - started
    assert result.ename == "CellTimeoutError", result.traceback
    assert result.prompts == [("never answered: ", False)]
    assert 0.8 < elapsed < 6
    assert kernel.run("1 + 1").out == "2"  # the kernel goes on


def test_input_in_a_map_task_says_why_it_cannot_prompt(kernel):
    result = kernel.run_answering(cell("""
        outcome = nbtimeout.map(input, ['?'], timeout=10, workers=1)[0]
        print(type(outcome.error).__name__, outcome.error)
        """), [])
    assert result.status == "ok", result.traceback
    assert result.prompts == []
    assert result.stream().startswith("StdinNotImplementedError input() cannot prompt from an nbtimeout.map")


# --- files ---------------------------------------------------------------------------------------

@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "f.txt")


def contents(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


def test_a_file_the_cell_opened_and_left_open_is_written(kernel, path):
    result = kernel.run(f"%%timeout 10 -m fork -q\nfh = open({path!r}, 'w')\nfh.write('hello')")
    assert result.status == "ok", result.traceback
    assert contents(path) == "hello"


def test_a_file_opened_in_the_cell_in_binary_mode_inside_a_function(kernel, path):
    result = kernel.run(cell(f"""
        %%timeout 10 -m fork -q
        def log(data):
            log.fh = getattr(log, 'fh', None) or open({path!r}, 'ab')
            log.fh.write(data)
        log(b'\\x00\\x01')
        log(b'\\x02')
        """))
    assert result.status == "ok", result.traceback
    assert contents(path, "rb") == b"\x00\x01\x02"


@pytest.mark.parametrize("magic", ["", "%%timeout 10 -m fork -q\n"])
def test_kernel_buffer_is_written_once_around_a_fork_cell(kernel, path, magic):
    """The issue's case: the kernel's unflushed 'kernel1' is not written again by the child."""
    assert kernel.run(f"kf = open({path!r}, 'w')\nkf.write('kernel1\\n')").status == "ok"
    result = kernel.run(magic + "kf.write('child\\n')\nkf.flush()")
    assert result.status == "ok", result.traceback
    assert kernel.run("kf.write('kernel2\\n')\nkf.close()").status == "ok"
    assert contents(path) == "kernel1\nchild\nkernel2\n"


def test_a_file_opened_in_an_earlier_cell_and_written_unflushed_in_the_fork_cell(kernel, path):
    assert kernel.run(f"early = open({path!r}, 'w')").status == "ok"
    assert kernel.run("%%timeout 10 -m fork -q\nearly.write('from the child\\n')").status == "ok"
    assert contents(path) == "from the child\n"  # arrived, though nobody flushed it
    assert kernel.run("early.write('kernel\\n')\nearly.close()").status == "ok"
    assert contents(path) == "from the child\nkernel\n"


def test_append_mode_file_written_by_kernel_and_child(kernel, path):
    with open(path, "w") as f:
        f.write("start\n")
    assert kernel.run(f"ap = open({path!r}, 'a')\nap.write('k1\\n')").status == "ok"
    assert kernel.run("%%timeout 10 -m fork -q\nap.write('c1\\n')").status == "ok"
    assert kernel.run("ap.write('k2\\n')\nap.close()").status == "ok"
    assert contents(path) == "start\nk1\nc1\nk2\n"


def test_a_file_closed_in_the_cell_is_written_once(kernel, path):
    assert kernel.run(f"cf = open({path!r}, 'wb')\ncf.write(b'k')").status == "ok"
    assert kernel.run("%%timeout 10 -m fork -q\ncf.write(b'c')\ncf.close()").status == "ok"
    # in the kernel the object is still open (the child closed its copy); closing it adds nothing
    assert kernel.run("cf.close()").status == "ok"
    assert contents(path, "rb") == b"kc"


@pytest.mark.parametrize(("mode", "step"), [("r", "rf.readline()"), ("rb", "rf.read(3)"), ("r", "rf.seek(6)"),
                                            ("r+", "(rf.write('LINE'), rf.flush())[0]"),
                                            ("rb+", "rf.write(b'LINE')")])
def test_a_file_the_kernel_opened_is_where_the_cell_left_it(kernel, path, mode, step):
    """Read, seek or write in the cell, then go on in the kernel: the same as without the magic."""
    seen = []
    for magic in ("", "%%timeout 10 -m fork -q\n"):
        with open(path, "w") as f:
            f.write("line1\nline2\nline3\n")
        assert kernel.run(f"rf = open({path!r}, {mode!r})").status == "ok"
        result = kernel.run(f"{magic}first = {step}")
        assert result.status == "ok", result.traceback
        seen.append((kernel.value("(first, rf.readline(), rf.tell())"), kernel.run("rf.close()").status,
                     contents(path)))
    assert seen[1] == seen[0]


def test_a_text_file_iterated_in_the_cell_reads_on_in_the_kernel_as_its_object_says(kernel, path):
    """``next(f)`` disables ``tell()``: the child cannot say where it is, so the kernel's object reads
    on from where it was (named in the README), never from the end the child left the descriptor at."""
    with open(path, "w") as f:
        f.write("line1\nline2\n")
    assert kernel.run(f"it = open({path!r})").status == "ok"
    assert kernel.run("%%timeout 10 -m fork -q\nfirst = next(it)").status == "ok"
    assert kernel.value("(first, it.readline())") == ("line1\n", "line1\n")
    kernel.run("it.close()")


def test_a_stopped_fork_cell_leaves_the_kernels_buffer_alone(kernel, path):
    assert kernel.run(f"sf = open({path!r}, 'w')\nsf.write('kernel\\n')").status == "ok"
    result = kernel.run("%%timeout 0.5 -m fork -q\nsf.write('child\\n')\nsf.flush()\nwhile True: pass")
    assert result.ename == "CellTimeoutError"
    assert kernel.run("sf.close()").status == "ok"
    assert contents(path) == "kernel\nchild\n"


def test_map_tasks_write_their_files(kernel, tmp_path):
    folder = str(tmp_path)
    result = kernel.run(cell(f"""
        def write(i):
            f = open(os.path.join({folder!r}, f'{{i}}.txt'), 'w')
            f.write(str(i))  # left open: the worker lives on
        nbtimeout.map(write, range(3), timeout=10, workers=1).unwrap()
        """))
    assert result.status == "ok", result.traceback
    assert [contents(str(tmp_path / f"{i}.txt")) for i in range(3)] == ["0", "1", "2"]


# --- threads that exist only in the kernel ---------------------------------------------------------

def test_thread_pool_from_an_earlier_cell_works_in_a_fork_cell(kernel):
    setup = cell("""
        from concurrent.futures import ThreadPoolExecutor
        ex = ThreadPoolExecutor(2)
        assert ex.submit(pow, 2, 3).result() == 8  # its threads exist now, in the kernel
        """)
    assert kernel.run(setup).status == "ok"
    result = kernel.run(cell("""
        %%timeout 10 -m fork -q
        got = [f.result() for f in [ex.submit(pow, 2, n) for n in range(4)]]
        mapped = list(ex.map(abs, [-1, -2]))
        """))
    assert result.status == "ok", result.traceback
    assert result.stream("stderr") == ""  # the kernel's pool was used, not changed, and kept its threads
    assert kernel.value("(got, mapped)") == ([1, 2, 4, 8], [1, 2])
    assert kernel.value("ex.submit(pow, 3, 2).result()") == 9  # the kernel's pool is untouched
    assert kernel.run("ex.shutdown()\ndel ex").status == "ok"  # see test_nested_cell_with_a_thread_in_the_namespace


@pytest.mark.parametrize("magic", ["", "%%timeout 10 -m fork -q\n"])
def test_shutting_a_kernel_pool_down_in_a_fork_cell(kernel, magic):
    setup = ("from concurrent.futures import ThreadPoolExecutor\n"
             "pool = ThreadPoolExecutor(1)\npool.submit(abs, 1).result()")
    assert kernel.run(setup).status == "ok"
    result = kernel.run(f"{magic}with pool:\n    done = pool.submit(abs, -5).result()")
    assert result.status == "ok", result.traceback
    assert kernel.value("done") == 5
    after = kernel.run("pool.submit(abs, 1)")
    assert (after.ename, after.evalue) == ("RuntimeError", "cannot schedule new futures after shutdown")
    assert kernel.run("del pool").status == "ok"


def test_joining_a_kernel_thread_in_a_fork_cell_says_why_at_once(kernel):
    setup = cell("""
        import threading
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait, name='background-job')
        worker.start()
        """)
    assert kernel.run(setup).status == "ok"
    started = time.monotonic()
    result = kernel.run("%%timeout 10 -m fork -q\nworker.join()")
    assert time.monotonic() - started < 5
    assert result.ename == "RuntimeError"
    assert "thread 'background-job' runs in the kernel" in result.evalue
    assert kernel.run("stop.set()\nworker.join()\ndel worker").status == "ok"


def test_a_thread_that_finished_before_the_cell_joins_as_in_the_kernel(kernel):
    setup = "import threading\ndone = threading.Thread(target=lambda: None)\ndone.start()\ndone.join()"
    assert kernel.run(setup).status == "ok"
    assert kernel.run("%%timeout 10 -m fork -q\ndone.join()").status == "ok"
    assert kernel.run("del done").status == "ok"


def test_threads_started_in_the_fork_cell_work(kernel):
    result = kernel.run(cell("""
        %%timeout 10 -m fork -q
        import threading
        box = []
        t = threading.Thread(target=box.append, args=(1,))
        t.start()
        t.join()
        """))
    assert result.status == "ok", result.traceback
    assert kernel.value("box") == [1]


def test_a_kernel_process_pool_says_why_at_once(kernel):
    setup = cell("""
        from concurrent.futures import ProcessPoolExecutor
        pp = ProcessPoolExecutor(1)
        assert pp.submit(abs, -1).result() == 1
        """)
    assert kernel.run(setup).status == "ok"
    result = kernel.run("%%timeout 10 -m fork -q\npp.submit(abs, -2).result()")
    assert result.ename == "RuntimeError"
    assert "ProcessPoolExecutor runs in the kernel" in result.evalue
    assert kernel.run("pp.shutdown()").status == "ok"


def test_waiting_on_a_queue_fed_by_a_kernel_thread_names_the_likely_cause(kernel):
    setup = cell("""
        import queue, threading
        jobs, go = queue.Queue(), threading.Event()
        feeder = threading.Thread(target=lambda: (go.wait(), jobs.put(42)), daemon=True)
        feeder.start()
        """)
    assert kernel.run(setup).status == "ok"
    result = kernel.run("%%timeout 1 -m fork -q\ngo.set()\nanswer = jobs.get()")
    assert result.ename == "CellTimeoutError"
    banner = "\n".join(result.displays())
    assert "line 3" in banner
    assert "threads started in the kernel do not run in a fork cell" in banner
    assert kernel.run("go.set()\nfeeder.join()\njobs.get()").out == "42"  # in the kernel it works
    assert kernel.run("del feeder").status == "ok"


def test_a_plain_stop_names_no_thread(kernel):
    result = kernel.run("%%timeout 0.5 -m fork -q\nwhile True: pass")
    assert result.ename == "CellTimeoutError"
    assert "threads started in the kernel" not in "\n".join(result.displays())


# --- more adversarial cases ------------------------------------------------------------------------

def test_widget_updated_from_a_thread_while_the_cell_prints_and_displays(kernel):
    """Two threads of the child talk to the kernel at once: nothing is lost or garbled."""
    result = kernel.run(cell("""
        %%timeout 30 -m fork -q
        import threading
        bar = widgets.IntProgress(max=200)
        def move():
            for v in range(1, 201):
                bar.value = v
        mover = threading.Thread(target=move)
        mover.start()
        for i in range(100):
            display(i)
            print(i)
        mover.join()
        """))
    assert result.status == "ok", result.traceback
    (bar,) = opened(result, "IntProgressModel")
    assert updates(result, bar["comm_id"]) == list(range(1, 201))
    assert result.displays() == [str(i) for i in range(100)]
    assert result.stream() == "".join(f"{i}\n" for i in range(100))


def test_binary_buffers_of_a_widget_arrive(kernel):
    result = kernel.run(cell("""
        %%timeout 30 -m fork -q
        image = widgets.Image(value=b'\\x89PNG' + bytes(range(256)) * 400, format='png')
        display(image)
        """))
    assert result.status == "ok", result.traceback
    (image,) = [m for m in result.of("comm_open") if m["content"]["data"]["state"].get("_model_name") == "ImageModel"]
    assert [bytes(b) for b in image["buffers"]] == [b"\x89PNG" + bytes(range(256)) * 400]


def test_input_in_a_nested_fork_cell_goes_through_both_levels(kernel):
    result = kernel.run_answering(cell("""
        %%timeout 30 -m fork -q
        get_ipython().run_cell_magic('timeout', '20 -m fork -q', "inner = input('inner? ')")
        outer = inner.upper()
        """), ["deep"])
    assert result.status == "ok", result.traceback
    assert result.prompts == [("inner? ", False)]
    assert result.stream("stderr") == ""
    assert kernel.value("(inner, outer)") == ("deep", "DEEP")


def test_interrupt_at_a_prompt_stops_the_child_and_keeps_the_kernel(kernel):
    # The ■ button: SIGINT to the kernel's process group (as jupyter_client sends it), from a plain
    # thread: a client call there would leave an event loop behind that warns when collected.
    group = os.getpgid(kernel.pid)
    assert group != os.getpgrp()
    timer = threading.Timer(2, os.killpg, (group, signal.SIGINT))
    timer.start()
    try:
        result = kernel.run_answering("%%timeout 30 -m fork -q\ninput('waiting: ')", [None])
    finally:
        timer.cancel()
    assert result.ename == "KeyboardInterrupt"
    assert result.prompts == [("waiting: ", False)]
    assert kernel.run("1 + 1").out == "2"


def test_a_stopped_cell_leaves_its_widget_with_the_last_state_it_sent(kernel):
    result = kernel.run(cell("""
        %%timeout 1 -m fork -q
        p = widgets.IntProgress(max=10)
        display(p)
        p.value = 7
        while True: pass
        """))
    assert result.ename == "CellTimeoutError"
    (bar,) = opened(result, "IntProgressModel")
    assert updates(result, bar["comm_id"]) == [7]
    assert not result.of("comm_close")
    assert bar["comm_id"] in kernel_comms(kernel)


def test_a_kernel_widget_changed_in_a_fork_cell_agrees_on_screen_and_in_the_kernel(kernel):
    assert kernel.run("shared = widgets.IntSlider()\ndisplay(shared)").status == "ok"
    result = kernel.run("%%timeout 10 -m fork -q\nshared.value = 5")
    assert result.status == "ok", result.traceback
    comm_id = kernel.value("shared.comm.comm_id")
    assert updates(result, comm_id) == [5]  # the view moved...
    assert kernel.value("shared.value") == 5  # ...and so did the kernel's widget
    assert updates(kernel.run("shared.value = 6"), comm_id) == [6]


def test_interact_in_a_fork_cell_shows_its_first_output(kernel):
    result = kernel.run(cell("""
        %%timeout 20 -m fork -q
        from ipywidgets import interact
        shown = interact(lambda x: print('twice', x * 2), x=3)
        del shown  # as the cell's value it could not come back: the function carries its widgets
        """))
    assert result.status == "ok", result.traceback
    assert "twice 6" in result.stream()
    (output,) = opened(result, "OutputModel")
    assert updates(result, output["comm_id"], "msg_id")[0] == result.messages[0]["parent_header"]["msg_id"]


def test_nbclient_saves_the_last_state_of_a_fork_cells_widget():
    """What nbconvert and papermill keep: the slider as the child left it."""
    import nbclient
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("%load_ext nbtimeout"),
        nbformat.v4.new_code_cell(cell("""
            %%timeout 20 -m fork -q
            import ipywidgets as widgets
            s = widgets.IntSlider()
            display(s)
            s.value = 42
            """))])
    nbclient.NotebookClient(notebook, kernel_name="python3", store_widget_state=True, timeout=60).execute()
    state = notebook.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    sliders = [model["state"]["value"] for model in state.values() if model["model_name"] == "IntSliderModel"]
    assert sliders == [42]
    view = notebook.cells[1].outputs[0]["data"]["application/vnd.jupyter.widget-view+json"]
    assert state[view["model_id"]]["model_name"] == "IntSliderModel"


def _ask(kernel: Kernel, msg_type: str, content: dict, answer: str, timeout: float = 20) -> dict:
    """Send a front end's comm message; the kernel's comm_msg reply whose data method is ``answer``."""
    msg = kernel.client.session.msg(msg_type, content)
    kernel.client.shell_channel.send(msg)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = kernel.client.get_iopub_msg(timeout=1)
        except Exception:  # queue.Empty
            continue
        if (reply["parent_header"].get("msg_id") == msg["header"]["msg_id"] and reply["msg_type"] == "comm_msg"
                and reply["content"]["data"].get("method") == answer):
            return reply
    raise AssertionError(f"no {answer} reply to {msg_type}")


def test_a_page_reload_gets_a_fork_cells_widget_back_as_it_was(kernel):
    """The front end asks for every widget's state (request_states on the control comm): the
    kernel answers for the child's widgets too, with their last state, and follows the front end."""
    result = kernel.run(cell("""
        %%timeout 20 -m fork -q
        s = widgets.IntSlider(max=100)
        display(s)
        s.value = 42
        """))
    assert result.status == "ok", result.traceback
    (slider,) = opened(result, "IntSliderModel")
    control = "control-" + slider["comm_id"]
    version = kernel.value("__import__('ipywidgets').widgets.widget.__control_protocol_version__")
    kernel.client.shell_channel.send(kernel.client.session.msg(
        "comm_open", {"comm_id": control, "target_name": "jupyter.widget.control", "data": {}},
        metadata={"version": version}))
    states = _ask(kernel, "comm_msg", {"comm_id": control, "data": {"method": "request_states"}},
                  "update_states")["content"]["data"]["states"]
    assert states[slider["comm_id"]]["model_name"] == "IntSliderModel"
    assert states[slider["comm_id"]]["state"]["value"] == 42
    # the user drags it after the cell; a second view asks for its state
    kernel.client.shell_channel.send(kernel.client.session.msg("comm_msg", {
        "comm_id": slider["comm_id"], "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []}}))
    state = _ask(kernel, "comm_msg", {"comm_id": slider["comm_id"], "data": {"method": "request_state"}},
                 "update")["content"]["data"]["state"]
    assert state["value"] == 7
    assert state["max"] == 100
    # and closing it in the front end forgets it
    kernel.client.shell_channel.send(kernel.client.session.msg("comm_close", {"comm_id": slider["comm_id"],
                                                                              "data": {}}))
    assert kernel.value(f"{slider['comm_id']!r} in __import__('ipywidgets').widgets.widget._instances") is False


def test_nested_cell_with_a_thread_in_the_namespace(kernel):
    # A kernel Thread's _stderr is the kernel's stream: the walk must not follow it into the shell.
    assert kernel.run("import threading\nidle = threading.Thread(target=print)").status == "ok"
    result = kernel.run(cell("""
        %%timeout 30 -m fork -q
        get_ipython().run_cell_magic('timeout', '20 -q', 'nested = 5')
        after = nested + 1
        """))
    kernel.run("del idle")
    assert result.stream("stderr") == ""
    assert kernel.value("(nested, after)") == (5, 6)


def test_a_widget_is_kept_in_a_kernel_that_never_imported_ipywidgets(fresh_kernel):
    """The kernel imports ipywidgets when the child's first widget arrives: its control comm is what
    the front end asks after a page reload (the browser test reloads the page)."""
    assert fresh_kernel.run("%load_ext nbtimeout").status == "ok"
    before = fresh_kernel.value("'ipywidgets' in __import__('sys').modules")
    result = fresh_kernel.run(cell("""
        %%timeout 20 -m fork -q
        import ipywidgets
        display(ipywidgets.IntSlider(3))
        """))
    assert result.status == "ok", result.traceback
    (slider,) = opened(result, "IntSliderModel")
    registry = "__import__('ipywidgets').widgets.widget._instances"
    kept = fresh_kernel.value(f"type({registry}[{slider['comm_id']!r}]).__name__")
    assert (before, kept) == (False, "Keeper")


def test_user_data_that_holds_the_shell_still_comes_back(kernel):
    assert kernel.run("holder = {'shell': get_ipython(), 'n': 1}").status == "ok"
    result = kernel.run("%%timeout 10 -m fork -q\nholder['n'] = 2\nfresh = [holder]")
    assert result.status == "ok", result.traceback
    assert result.stream("stderr") == ""
    assert kernel.value("(holder['n'], fresh[0] is holder, holder['shell'] is get_ipython())") == (2, True, True)
    kernel.run("del holder, fresh")

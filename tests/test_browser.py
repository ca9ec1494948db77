"""JupyterLab 4 in headless Chromium: what a person sees of timed cells (issue 4).

Runs tests/data/browser.ipynb (a finished, a stopped --continue and a crashed fork cell) with
"Run All Cells" and checks the countdown line and the records on screen, and their contrast from
pixels on the light and the dark theme (issue 14); opens each tour notebook and checks it is not
marked modified. Screenshots go to a temp folder, or to docs/img/ (which the README shows) with
NBTIMEOUT_SCREENSHOTS=docs/img.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent
CHROMIUM = os.environ.get("NBTIMEOUT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
TOKEN = "nbtimeout-browser-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free localhost port, serving a temp dir with browser.ipynb."""
    # CI sets NBTIMEOUT_REQUIRE_BROWSER=1: there a missing piece is a failure, not a skip.
    if os.environ.get("NBTIMEOUT_REQUIRE_BROWSER") and not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}, and NBTIMEOUT_REQUIRE_BROWSER is set")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if not os.environ.get("NBTIMEOUT_REQUIRE_BROWSER"):
        pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (pip install jupyterlab)")
        pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    base = tmp_path_factory.mktemp("lab")
    root, conf = base / "root", base / "config"
    root.mkdir()
    (conf / "labconfig").mkdir(parents=True)
    shutil.copy(HERE / "data" / "browser.ipynb", root / "browser.ipynb")
    # No news toast over the notebook, and nothing written to the user's own settings.
    (conf / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(conf), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
           "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # containers and CI often run as root
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready, log = threading.Event(), []

    def read_log() -> None:  # drain the log (a full pipe would block the server) and spot "ready"
        for line in server.stderr:
            log.append(line)
            if f"127.0.0.1:{port}/lab" in line:
                ready.set()
        ready.set()  # the server exited: let the fixture see that at once

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), "JupyterLab did not start within 60 s:\n" + "".join(log)
        assert server.poll() is None, "JupyterLab exited:\n" + "".join(log)
        yield f"http://127.0.0.1:{port}", root
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(5)
        server.stderr.close()


@pytest.fixture(scope="module")
def lab_root(lab):
    return lab[1]


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            view = browser.new_page(viewport={"width": 1100, "height": 1000})
            view.set_default_timeout(30_000)
            view.goto(f"{lab[0]}/lab/tree/browser.ipynb?token={TOKEN}")
            yield view
        finally:
            browser.close()


def test_tqdm_auto_bar_from_a_fork_cell_renders_and_moves(page, lab, tmp_path):
    """Issue 12: a tqdm.auto bar made in a fork cell's child is drawn by the front end, live."""
    import urllib.request

    from playwright.sync_api import expect

    url = lab[0] if isinstance(lab, tuple) else lab
    shots = pathlib.Path(os.environ.get("NBTIMEOUT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    name = "browser_tqdm.ipynb"
    body = {"type": "notebook", "format": "json",
            "content": json.loads((HERE / "data" / name).read_text())}
    upload = urllib.request.Request(f"{url}/api/contents/{name}?token={TOKEN}", method="PUT",
                                    data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(upload).close()

    tab = page.context.browser.new_page(viewport={"width": 1100, "height": 600})
    try:
        tab.set_default_timeout(30_000)
        # a workspace of its own, empty: the other test's notebook must not be restored next to this one
        tab.goto(f"{url}/lab/workspaces/tqdm/tree/{name}?reset&token={TOKEN}")
        panel = tab.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        cells = panel.locator(".jp-Notebook .jp-CodeCell")
        expect(cells).to_have_count(2, timeout=60_000)
        expect(panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1,
                                                                                                  timeout=60_000)
        # %load_ext first, until it has run: an execute sent while the new kernel's connection is
        # still opening can be dropped by the front end (seen when this test runs alone)
        ran = cells.first.locator(".jp-InputPrompt").filter(has_text=re.compile(r"\[\d+\]"))
        for _attempt in range(3):
            cells.first.click()
            tab.keyboard.press("Control+Enter")
            try:
                expect(ran).to_have_count(1, timeout=15_000)
                break
            except AssertionError:
                continue
        expect(ran).to_have_count(1)
        cells.nth(1).click()
        tab.keyboard.press("Control+Enter")

        cell = cells.nth(1)
        bar = cell.locator(".widget-hprogress, .widget-progress").first
        counter = cell.locator(".jupyter-widgets").filter(has_text=re.compile(r"\d+/10"))
        # moving: seen part-way, then full
        try:
            expect(counter.last).to_contain_text(re.compile(r"\b[1-8]/10\b"), timeout=30_000)
        except AssertionError:
            tab.screenshot(path=str(shots / "tqdm-fork-cell-failed.png"), full_page=True)
            raise
        expect(bar).to_be_visible()
        expect(cell.locator(".jupyter-widgets").filter(has_text="in a fork cell").first).to_be_visible()
        expect(counter.last).to_contain_text("10/10", timeout=30_000)
        expect(panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1,
                                                                                                  timeout=30_000)
        expect(cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
               .filter(has_text="Error")).to_have_count(0)
        cell.screenshot(path=str(shots / "tqdm-fork-cell.png"))

        # after a page reload the bar comes back from the kernel, which kept its last state
        tab.keyboard.press("Escape")
        tab.keyboard.press("Control+s")
        expect(tab.locator(".jp-mod-dirty")).to_have_count(0, timeout=30_000)
        tab.reload()
        expect(cells).to_have_count(2, timeout=60_000)
        try:
            expect(counter.last).to_contain_text("10/10", timeout=60_000)
        except AssertionError:
            tab.screenshot(path=str(shots / "tqdm-fork-cell-reload-failed.png"), full_page=True)
            raise
        expect(bar).to_be_visible()
    finally:
        tab.close()
        # its kernel goes too: the next test has the machine to itself
        with urllib.request.urlopen(f"{url}/api/sessions?token={TOKEN}") as answer:
            sessions = json.load(answer)
        for session in sessions:
            if session["path"].endswith(name):
                urllib.request.urlopen(urllib.request.Request(
                    f"{url}/api/sessions/{session['id']}?token={TOKEN}", method="DELETE")).close()


def test_run_all_shows_countdown_records_and_banners_readable_in_both_themes(page, tmp_path):
    from playwright.sync_api import expect

    shots = pathlib.Path(os.environ.get("NBTIMEOUT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell")
    expect(cells).to_have_count(4, timeout=60_000)
    # the kernel must be up before Run All, or the first cells queue behind its start
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(panel.locator(".jp-KernelName")).to_have_text(re.compile("Python 3"), timeout=60_000)
    expect(panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1,
                                                                                              timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()

    finished, stopped, crashed = cells.nth(1), cells.nth(2), cells.nth(3)
    # live: after a second the countdown line appears and counts up while the cell sleeps its 3 s
    live = finished.locator("[data-nbtimeout='running']")
    expect(live).to_contain_text(re.compile(r"◷ Running [12]\.\d s of 5\.01 s \(signal engine\)"), timeout=30_000)
    finished.screenshot(path=str(shots / "countdown.png"))
    # ...and becomes the record, in place
    record = finished.locator("[data-nbtimeout='finished']")
    expect(record).to_contain_text(re.compile(r"✔ Finished in 3(?:\.\d+)? s \(limit 5\.01 s, signal engine\)"),
                                   timeout=30_000)
    expect(live).to_have_count(0)
    expect(finished.locator(".jp-OutputArea-output").last).to_contain_text("'finished'")

    # the stopped cell showed a countdown (past 1 s), then its banner took that line's place
    stop_banner = stopped.locator("[data-nbtimeout='continued']")
    expect(stop_banner).to_contain_text("■ Stopped (continuing)", timeout=30_000)
    expect(stop_banner).to_contain_text("(limit 2 s, signal engine)")
    expect(stop_banner).to_contain_text(re.compile(r"at line [34] in spin\(\) of In \[\d+\]"))
    expect(stopped.locator("[data-nbtimeout]")).to_have_count(1)

    crash_banner = crashed.locator("[data-nbtimeout='crashed']")
    expect(crash_banner).to_contain_text("☠ Crashed", timeout=30_000)
    expect(crash_banner).to_contain_text("killed by SIGSEGV")
    expect(crashed.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
           .filter(has_text="CellCrashedError").first).to_be_visible()
    for cell in (finished, stopped, crashed):  # records, not widgets
        expect(cell.locator(".jupyter-widgets")).to_have_count(0)

    lines = {"finished": record, "stopped": stop_banner, "crashed": crash_banner}
    for theme in ("light", "dark"):
        if theme == "dark":
            page.get_by_role("menuitem", name="Settings", exact=True).click()
            page.locator(".lm-Menu-item", has_text=re.compile(r"^Theme\s*$")).first.click()  # a submenu
            page.locator(".lm-Menu-item", has_text=re.compile(r"^JupyterLab Dark\s*$")).first.click()
            expect(page.locator("body[data-jp-theme-name='JupyterLab Dark']")).to_have_count(1, timeout=30_000)
            expect(page.locator("body[data-jp-theme-light='false']")).to_have_count(1)
        suffix = "" if theme == "light" else "-dark"
        for state, element in lines.items():
            for part in (element.locator(":scope > div").first, element.locator(":scope > div").last):
                # The theme's colours fade in (CSS transitions) after the body says it is dark:
                # read the pixels until they settle, for a bounded time.
                deadline = time.monotonic() + 10
                while (ratio := pixel_contrast(part.screenshot())) < 4.5 and time.monotonic() < deadline:
                    page.wait_for_timeout(200)
                assert ratio >= 4.5, f"{state} text on the {theme} theme: {ratio:.2f}:1"
        stopped.screenshot(path=str(shots / f"stopped-cell{suffix}.png"))
        crashed.screenshot(path=str(shots / f"crashed-cell{suffix}.png"))
        page.screenshot(path=str(shots / f"notebook{suffix}.png"), full_page=True)


def pixel_contrast(png: bytes) -> float:
    """WCAG contrast between the commonest colour of a screenshot (the background) and the pixel that
    differs from it most (a fully covered glyph pixel: the text colour)."""
    import io

    import numpy as np
    from matplotlib.image import imread

    rgb = np.round(imread(io.BytesIO(png))[..., :3] * 255).reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    background = colours[counts.argmax()]

    def luminance(c: np.ndarray) -> np.ndarray:
        c = c / 255
        c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return c @ np.array([0.2126, 0.7152, 0.0722])

    lum, back = luminance(colours), luminance(background)
    ratios = (np.maximum(lum, back) + 0.05) / (np.minimum(lum, back) + 0.05)
    return float(ratios.max())


def test_committed_tour_notebooks_open_unmodified(page, lab_root):
    """Opening a tour notebook (which starts its kernel) must not mark it modified."""
    import urllib.request

    from playwright.sync_api import expect

    base = page.url.split("/lab/")[0]
    for source in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        shutil.copy(source, lab_root / source.name)
        with urllib.request.urlopen(f"{base}/api/sessions?token={TOKEN}") as answer:
            for session in json.load(answer):  # the kernels of what was open before: this one alone runs
                urllib.request.urlopen(urllib.request.Request(
                    f"{base}/api/sessions/{session['id']}?token={TOKEN}", method="DELETE")).close()
        # ?reset: a fresh workspace, so only this notebook opens (restored tabs would start kernels too)
        page.goto(f"{base}/lab/tree/{source.name}?reset&token={TOKEN}")
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        expect(panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1,
                                                                                                  timeout=60_000)
        # JupyterLab rewrites metadata (the kernelspec) right after the kernel connects: watch a while
        page.wait_for_timeout(2_000)
        tab = page.locator(".lm-TabBar-tab", has_text=source.name)
        expect(tab).to_have_count(1)
        if "jp-mod-dirty" in (tab.get_attribute("class") or ""):
            page.keyboard.press("Control+s")  # save it, to say what JupyterLab changed
            expect(page.locator(".lm-TabBar-tab.jp-mod-dirty", has_text=source.name)).to_have_count(0)
            before, after = json.loads(source.read_text()), json.loads((lab_root / source.name).read_text())
            changed = [key for key in before["metadata"] if before["metadata"][key] != after["metadata"].get(key)]
            cells = [i for i, (one, two) in enumerate(zip(before["cells"], after["cells"], strict=False))
                     if one != two]
            pytest.fail(f"{source.name} is marked modified on open; metadata changed: {changed}, cells: {cells}, "
                        f"e.g. {[before['cells'][i] for i in cells[:1]]} -> {[after['cells'][i] for i in cells[:1]]}")

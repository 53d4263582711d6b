"""The Dagster UI in a real browser: `dagster dev` on loopback, headless Debian chromium
(Playwright drives it; no browser is downloaded at test time). The test opens the asset
graph, checks the assets are listed, clicks "Materialize all", waits for the run to succeed,
opens the weekly-quality plot in the mart's metadata and checks the image decoded, then
launches two full-graph runs at once and checks the warehouse pool made them take turns.
Screenshots go under artifacts/screenshots/. It stops what it started, by PID."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ingest.warehouse import CHECKOUT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = CHECKOUT_ROOT / "artifacts" / "screenshots"
SERVER_START_S = 240
RUN_TIMEOUT_S = 480

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RUNS_QUERY = """
query { runsOrError(limit: 10) { __typename ... on Runs { results {
  runId status startTime endTime } } } }
"""

LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } }
} }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


WORKSPACE_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def _wait_for_code_location(base: str) -> None:
    """The webserver answers before the code server has loaded the definitions."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        entries = _graphql(base, WORKSPACE_QUERY)["data"]["workspaceOrError"]["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e["locationOrLoadError"] for e in entries]
            assert all(e["__typename"] == "RepositoryLocation" for e in errors), errors
            return
        time.sleep(1)
    pytest.fail(f"the code location did not load within {SERVER_START_S}s")


def _runs(base: str) -> list[dict[str, Any]]:
    return _graphql(base, RUNS_QUERY)["data"]["runsOrError"]["results"]


def _launch_full_graph(base: str, assets: list[list[str]] | None = None) -> str:
    """Launch the full_graph job, or only the given assets of it (asset key paths)."""
    selector: dict[str, Any] = {
        "repositoryLocationName": "orchestration.definitions",
        "repositoryName": "__repository__",
        "jobName": "full_graph",
    }
    if assets is not None:
        selector["assetSelection"] = [{"path": path} for path in assets]
    params = {"selector": selector, "runConfigData": {}}
    result = _graphql(base, LAUNCH_MUTATION, {"params": params})["data"]["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def _two_runs_take_turns(base: str) -> None:
    """Two runs that write the warehouse launched together: the warehouse pool (limit 1)
    keeps the second QUEUED while the first runs, then it runs; both succeed and their run
    windows don't overlap, so neither hit DuckDB's write lock. Each is the publish step
    alone (in the pool like every step that writes the warehouse): two more full-graph runs
    took minutes of CI time to show the same thing."""
    publish_only = [["serving", "published"]]
    run_ids = [_launch_full_graph(base, publish_only), _launch_full_graph(base, publish_only)]
    seen_waiting = False
    deadline = time.monotonic() + 2 * RUN_TIMEOUT_S
    while True:
        runs = {r["runId"]: r for r in _runs(base) if r["runId"] in run_ids}
        statuses = [runs[i]["status"] for i in run_ids]
        assert statuses.count("STARTED") + statuses.count("STARTING") <= 1, statuses
        if "QUEUED" in statuses and any(s in {"STARTED", "STARTING"} for s in statuses):
            seen_waiting = True
        if all(s in {"SUCCESS", "FAILURE", "CANCELED"} for s in statuses):
            break
        assert time.monotonic() < deadline, f"runs still {statuses}"
        time.sleep(1)
    assert statuses == ["SUCCESS", "SUCCESS"], statuses
    assert seen_waiting, "the second run never waited for the first"
    first, second = sorted(runs.values(), key=lambda r: r["startTime"])
    assert second["startTime"] >= first["endTime"], (first, second)


def _wait_for_server(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dagster dev exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"dagster dev did not answer within {SERVER_START_S}s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we started (dagster dev, its webserver, daemon and code
    server), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def ui_env(tmp_path: Path) -> dict[str, str]:
    """A scratch instance, warehouse and inbox with a small generated drop in it."""
    from engram.generate import generate

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(CHECKOUT_ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    generate(tmp_path / "generated", 100, 1500, seed=11)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("patterns.jsonl", "events.jsonl"):
        shutil.copy(tmp_path / "generated" / name, inbox / name)
        old = time.time() - 60  # settled: not being written any more
        os.utime(inbox / name, (old, old))
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(home),
        ENGRAM_DB=str(tmp_path / "warehouse" / "engram.duckdb"),
        ENGRAM_INBOX=str(inbox),
        ENGRAM_AUTOMATION="off",  # the sensor would start its own run for the same drop
        DAGSTER_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    return env


def _materialize_all(page: Any, base: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    page.set_default_timeout(120_000)
    expect.set_options(timeout=60_000)
    _wait_for_code_location(base)
    page.goto(f"{base}/asset-groups")
    skip = page.get_by_role("button", name="Skip")  # first-visit "join the community" dialog
    with contextlib.suppress(PlaywrightTimeout):
        skip.click(timeout=10_000)
    for group in ("raw", "staging", "intermediate", "marts", "serving"):
        expect(page.get_by_role("button", name=f"asset_group {group} {group}")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "asset_graph.png"))

    # The catalog lists every asset by key. Its list is virtualized (only rows on screen
    # exist), so a tall viewport puts them all on screen.
    page.set_viewport_size({"width": 1600, "height": 6000})
    page.goto(f"{base}/assets")
    keys = ["raw / patterns", "raw / embeddings", "staging / stg_patterns"]
    keys += ["marts / pattern_trend_summary", "serving / published"]
    for key in keys:
        expect(page.get_by_role("link").filter(has_text=key).first).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "asset_catalog.png"))
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(f"{base}/asset-groups")

    assert _runs(base) == []
    materialize = page.get_by_role("button", name=re.compile(r"^(materialization )?Materialize"))
    expect(materialize.first).to_be_enabled()
    materialize.first.click()
    deadline = time.monotonic() + 60
    while not (runs := _runs(base)) and time.monotonic() < deadline:
        time.sleep(1)
    assert len(runs) == 1, "clicking Materialize all launched no run"
    run_id = runs[0]["runId"]

    status = runs[0]["status"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while status not in {"SUCCESS", "FAILURE", "CANCELED"}:
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(3)
        status = next(r["status"] for r in _runs(base) if r["runId"] == run_id)
    page.goto(f"{base}/runs/{run_id}")
    page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "run.png"))
    assert status == "SUCCESS", f"run {run_id} ended {status}; see run.png"

    # The mart's materialization shows the insight table and the plot (a data-URI PNG in
    # markdown metadata, which the UI shows behind "[Show Markdown]" in a dialog).
    page.goto(f"{base}/assets/marts/pattern_trend_summary")
    insights = page.get_by_text("most_improving_patterns").first
    expect(insights).to_be_visible()
    insights.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "pattern_trend_summary.png"))
    plot_row = page.locator("tr").filter(has_text="weekly_quality_plot").first
    plot_row.get_by_text("Show Markdown").click()
    plot = page.get_by_role("dialog").locator("img").first
    expect(plot).to_be_visible()
    src, width, height = plot.evaluate("i => [i.src.slice(0, 22), i.naturalWidth, i.naturalHeight]")
    assert src == "data:image/png;base64,", src
    assert width > 100 and height > 100, "the plot image did not decode"
    page.screenshot(path=str(SCREENSHOTS / "weekly_quality_plot.png"))

    _two_runs_take_turns(base)


def test_materialize_all_from_the_asset_graph(ui_env: dict[str, str], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "/usr/bin/chromium is missing: install Debian's chromium (.ci/run does) to run "
            "the browser test"
        )
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dagster_dev.log"
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "dev", "-m", "orchestration.definitions"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as log_handle:
        process = subprocess.Popen(
            command,
            cwd=CHECKOUT_ROOT,
            env=ui_env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one below
        )
    try:
        _wait_for_server(base, process, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
            )
            try:
                _materialize_all(browser.new_page(viewport={"width": 1600, "height": 1000}), base)
            finally:
                browser.close()
    finally:
        _stop(process)
    assert (SCREENSHOTS / "run.png").stat().st_size > 0

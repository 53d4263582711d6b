"""engram installed from its wheel (not editable) works outside the checkout: the dbt project
travels as package data, and ingest + build + similar run from another folder.

The fresh venv gets engram from the wheel only; its third-party dependencies come from the
test's own environment through a .pth line (the editable install's finder there is not
activated that way), so the test needs no network and no second copy of torch.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ingest.warehouse import CHECKOUT_ROOT

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=True)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with engram installed from a freshly built wheel."""
    root = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ENGRAM_DB")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", XDG_DATA_HOME=str(root / "data"))
    env.pop("DBT_TARGET_PATH", None)
    env.pop("DBT_LOG_PATH", None)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(root / "dist"),
            str(CHECKOUT_ROOT),
        ],
        root,
        env,
    )
    (wheel,) = (root / "dist").glob("engram-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    python = venv / "bin" / "python"
    target_site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, env
        ).stdout.strip()
    )
    ours = [sysconfig.get_path("purelib"), *site.getsitepackages()]
    (target_site / "engram_test_deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        root,
        env,
    )
    return venv, env


def test_the_wheel_carries_the_dbt_project_and_runs_outside_the_checkout(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    python, engram = venv / "bin" / "python", venv / "bin" / "engram"
    where = run(
        [
            str(python),
            "-c",
            "import engram, engram.project as p; print(engram.__file__); print(p.project_dir())",
        ],
        tmp_path,
        env,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(venv), where  # not the checkout's engram
    assert Path(where[1]) == Path(where[0]).parent / "dbt_project"
    assert (Path(where[1]) / "models" / "marts").is_dir()

    data = tmp_path / "logs"
    data.mkdir()
    (data / "patterns.jsonl").write_text(
        "\n".join(
            json.dumps({"pattern_id": f"p{i}", "description": text})
            for i, text in enumerate(
                [
                    "Freeze the clock in the test so the date does not change at midnight",
                    "Retry the HTTP request with exponential backoff",
                    "Pin the dependency version that broke the build",
                ]
            )
        )
        + "\n"
    )
    (data / "events.jsonl").write_text(
        "\n".join(
            json.dumps(
                {
                    "event_id": f"e{i}",
                    "pattern_id": f"p{i % 3}",
                    "session_id": f"s{i // 4}",
                    "timestamp": f"2026-0{1 + i % 6}-1{i % 9}T10:00:00Z",
                    "outcome_quality": 0.5 + 0.05 * (i % 10),
                    "files_involved": ["src/app.py", f"tests/test_{i % 3}.py"],
                    "context": [
                        "flaky test at midnight",
                        "timeouts calling the API",
                        "build broke after upgrade",
                    ][i % 3],
                }
            )
            for i in range(30)
        )
        + "\n"
    )
    run([str(engram), "ingest", str(data)], tmp_path, env)
    run([str(engram), "build"], tmp_path, env)
    answer = run(
        [str(engram), "similar", "test breaks around midnight", "-k", "1", "--json"], tmp_path, env
    )
    rows = json.loads(answer.stdout)
    assert rows[0]["pattern_id"] == "p0", rows
    # the default warehouse of an installed engram is in the user's data folder
    assert (Path(env["XDG_DATA_HOME"]) / "engram" / "engram.duckdb").is_file()
    assert not (tmp_path / "warehouse").exists()

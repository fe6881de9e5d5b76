"""The GitHub Actions workflows pass actionlint and zizmor (offline), and both linters catch a
workflow with an injection, an unpinned action and a wrong input."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ZIZMOR = Path(sys.executable).with_name("zizmor")
BAD = """\
on: pull_request_target
jobs:
  x:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with: {foo: 1}
      - run: echo "${{ github.event.pull_request.title }}"
"""


def actionlint(cwd: Path):
    return subprocess.run(["node", str(ROOT / "tools" / "lint_workflows.mjs")], cwd=cwd,
                          capture_output=True, text=True)


def zizmor(cwd: Path):
    return subprocess.run([str(ZIZMOR), "--offline", ".github/workflows"], cwd=cwd,
                          capture_output=True, text=True)


def test_workflows_exist():
    names = {w.name for w in WORKFLOWS}
    assert {"ci.yml", "book.yml", "linkcheck.yml"} <= names


def test_actionlint_passes():
    r = actionlint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_zizmor_passes():
    r = zizmor(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_pinned_actions(path):
    wf = yaml.safe_load(path.read_text())
    assert wf.get("permissions") == {}, f"{path.name}: the workflow should grant nothing by default"
    for name, job in wf["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} sets no permissions"
        assert "timeout-minutes" in job, f"{path.name}: job {name} has no timeout"
        for step in job.get("steps", []):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", step["uses"]), \
                    f"{path.name}: {step['uses']} is not pinned to a commit"
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def test_linters_catch_a_bad_workflow(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(BAD)
    a, z = actionlint(tmp_path), zizmor(tmp_path)
    assert a.returncode != 0 and "foo" in a.stderr and "untrusted" in a.stderr
    assert z.returncode != 0 and "unpinned" in (z.stdout + z.stderr)


def test_ci_installs_cpu_pytorch_in_both_venvs():
    """GitHub's runners have no GPU and PyPI's Linux PyTorch is the CUDA build (several GB): CI
    gives the book's venv and the fresh reader's (tools/reader_env.py reads
    DLCV_TORCH_INDEX_URL) PyTorch's CPU wheels."""
    job = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["test"]
    assert job["env"]["DLCV_TORCH_INDEX_URL"].endswith("/whl/cpu")
    assert "DLCV_TORCH_INDEX_URL" in (ROOT / "tools" / "reader_env.py").read_text()

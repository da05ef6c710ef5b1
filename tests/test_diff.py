"""`make diff`: metrics/params markdown and an offline plots page, in a temporary git+DVC repo
with two commits whose params differ."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flows.diff import VENDOR_DIR, VENDOR_SCRIPTS, metrics_markdown, offline_template

ROOT = Path(__file__).resolve().parents[1]

# A one-stage pipeline: the metric and the loss curve depend on train.lr; a PNG plot too.
STAGE = """
import json, struct, zlib, yaml
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
json.dump({"f1": round(1 - lr, 4), "loss": lr * 5}, open("reports/metrics.json", "w"))
with open("reports/loss.csv", "w") as f:
    f.write("step,loss\\n" + "".join(f"{i},{(5 - i) * lr}\\n" for i in range(5)))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(b"\\x00\\xff\\x00\\x00")) + chunk(b"IEND", b"")
open("reports/confusion.png", "wb").write(png)
"""
DVC_YAML = """stages:
  train:
    cmd: python stage.py
    deps: [stage.py]
    params: [train]
    metrics:
      - reports/metrics.json: {cache: false}
    plots:
      - reports/loss.csv: {x: step, y: loss, cache: false}
      - reports/confusion.png: {cache: false}
"""


def _run(cmd: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def two_commits(tmp_path_factory) -> Path:
    """Commit 1: lr 0.001; commit 2: lr 0.01 (reproduced); workspace == commit 2."""
    repo = tmp_path_factory.mktemp("diff-repo")
    dvc = [sys.executable, "-m", "dvc"]
    (repo / "stage.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "reports").mkdir()
    _run(["git", "init", "-q"], repo)
    _run(dvc + ["init", "-q"], repo)
    for lr in ("0.001", "0.01"):
        (repo / "params.yaml").write_text(f"train:\n  lr: {lr}\n  epochs: 3\n")
        _run(dvc + ["repro", "-q"], repo)
        _run(["git", "add", "-A"], repo)
        _run(["git", "commit", "-qm", f"lr {lr}"], repo)
    return repo


def test_markdown_shows_the_changed_param_and_metric_and_not_the_unchanged_param(two_commits):
    md = metrics_markdown("HEAD~1", two_commits)
    params_part = md.split("## Params")[1]
    row = next(line for line in params_part.splitlines() if "train.lr" in line)
    assert "0.001" in row and "0.01" in row
    assert "train.epochs" not in md  # dvc params diff lists changed params only
    f1_row = next(line for line in md.split("## Params")[0].splitlines() if "| f1" in line)
    assert "0.999" in f1_row and "0.99" in f1_row and "-0.009" in f1_row


def test_cli_writes_both_reports_and_the_page_needs_no_network(two_commits):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "flows.diff", "--base", "HEAD~1"],
        cwd=two_commits,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    out = two_commits / "reports" / "diff"
    assert "train.lr" in (out / "metrics.md").read_text()
    html = (out / "plots.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", html, re.IGNORECASE)
    assert scripts and not [s for s in scripts if re.search(r"src\s*=", s, re.IGNORECASE)]  # all inline
    assert "http://" not in " ".join(scripts) and "https://" not in " ".join(scripts)
    assert "vegaEmbed(" in html and "reports/loss.csv" in html
    # both revisions' data are in the page
    assert '"rev": "HEAD~1"' in html or "HEAD~1" in html
    assert "workspace" in html
    # the libraries are inlined verbatim (bar the escaped closing tags)
    vega = (VENDOR_DIR / "vega.min.js").read_text()
    assert vega[:2000] in html
    # the image plot is a data URI (the page is one file) and decodes to the PNG the stage wrote
    srcs = re.findall(r'<img src="([^"]+)"', html.split("<body>", 1)[1])
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    png = (two_commits / "reports" / "confusion.png").read_bytes()
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == png


def test_missing_base_revision_gives_a_report_not_a_crash(two_commits):
    md = metrics_markdown("HEAD~5", two_commits)
    assert "not found" in md and "f1" in md  # the workspace metrics instead


def test_offline_template_orders_libraries_and_has_no_cdn_placeholder():
    tmpl = offline_template()
    positions = [tmpl.index(f"/* {name}") for name in VENDOR_SCRIPTS]
    assert positions == sorted(positions)  # vega, then vega-lite, then vega-embed
    assert "{plot_divs}" in tmpl and "{scripts}" not in tmpl
    assert "cdn.jsdelivr" not in tmpl


def test_dvc_plots_show_renders_offline_with_the_project_config(two_commits, tmp_path):
    """`dvc plots show` (make plots) uses .dvc/config's plots.html_template: the page that
    `make install` writes with flows.diff --write-template, so no script comes from a CDN."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".dvc" / "config")
    name = cfg["plots"]["html_template"]
    _run([sys.executable, "-m", "flows.diff", "--write-template", str(two_commits / ".dvc" / name)], ROOT)
    _run([sys.executable, "-m", "dvc", "config", "--local", "plots.html_template", name], two_commits)
    _run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(tmp_path / "page")], two_commits)
    html = (tmp_path / "page" / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", html, re.IGNORECASE)
    assert scripts and not [s for s in scripts if re.search(r"src\s*=", s, re.IGNORECASE)]
    assert "vegaEmbed(" in html and "reports/loss.csv" in html

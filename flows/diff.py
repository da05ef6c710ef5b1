"""Metrics, params and plots across commits: ``make diff BASE=HEAD~1``.

    python -m flows.diff --base HEAD~1      # -> reports/diff/metrics.md, reports/diff/plots.html
    python -m flows.diff --write-template .dvc/plots-offline.html   # the page `dvc plots show` uses

``metrics.md`` holds ``dvc metrics diff --md`` and ``dvc params diff --md`` between BASE and
the workspace. ``plots.html`` is ``dvc plots diff`` rendered with an HTML template that inlines
the vega / vega-lite / vega-embed builds vendored in ``flows/vendor/`` (DVC's default page loads
them from a CDN), with images inlined as data URIs: one file that renders without network.
The same template, written to .dvc/plots-offline.html by ``make install`` and named by
.dvc/config's ``plots.html_template``, makes ``dvc plots show`` (``make plots``) offline too.

Imports only the standard library (DVC runs as a subprocess), so ``flows.ingest`` and the
Makefile can use it cheaply.
"""

from __future__ import annotations

import argparse
import base64
import logging
import mimetypes
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stages.records import atomic_write_text

log = logging.getLogger("relmine.diff")

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
VENDOR_SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")  # load order matters
VENDOR_VERSIONS = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}

# Matches any <script ... src="http(s)://..."> that could still slip in (a later DVC version).
REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>", re.IGNORECASE)
IMG_SRC = re.compile(r"(<img\b[^>]*\bsrc=\")([^\"]+)(\")", re.IGNORECASE)


class DiffError(RuntimeError):
    pass


@dataclass
class DiffReport:
    metrics_md: Path
    plots_html: Path | None


def dvc_cmd() -> list[str]:
    return [sys.executable, "-m", "dvc"]


def _run(cmd: list[str], repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True)


def revision_exists(rev: str, repo: str | Path = ".") -> bool:
    proc = _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], Path(repo))
    return proc.returncode == 0


def _dvc_table(args: list[str], repo: Path) -> str:
    proc = _run(dvc_cmd() + args, repo)
    if proc.returncode != 0:
        raise DiffError(
            f"`dvc {' '.join(args)}` failed in {repo}:\n{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return proc.stdout.strip()


def metrics_markdown(base: str = "HEAD~1", repo: str | Path = ".", title: str | None = None) -> str:
    """Markdown with the metrics diff and the params diff between ``base`` and the workspace.

    When ``base`` does not exist (the first commit, a fresh repo), say so and show the
    workspace's metrics instead of failing: an ingest run on a new repo still gets a report.
    """
    repo = Path(repo)
    lines = [f"# {title or f'Metrics and params: {base} vs workspace'}", ""]
    if not revision_exists(base, repo):
        lines += [
            f"Revision `{base}` not found (no earlier commit?): nothing to compare against.",
            "",
            "## Metrics (workspace)",
            "",
            _dvc_table(["metrics", "show", "--md"], repo) or "_no metrics_",
            "",
        ]
        return "\n".join(lines) + "\n"
    metrics = _dvc_table(["metrics", "diff", "--md", base], repo)
    params = _dvc_table(["params", "diff", "--md", base], repo)
    lines += [
        "## Metrics",
        "",
        metrics or "_no metric changed_",
        "",
        "## Params",
        "",
        params or "_no param changed_",
        "",
    ]
    return "\n".join(lines) + "\n"


def offline_template() -> str:
    """A DVC HTML template with the vega libraries inline and no ``{scripts}`` placeholder,
    so DVC's CDN <script src> tags are never inserted."""
    scripts = []
    for name in VENDOR_SCRIPTS:
        path = VENDOR_DIR / name
        if not path.exists():
            raise DiffError(f"{path} missing: restore flows/vendor/ (see flows/vendor/README.md)")
        # "</script" inside the code would end the inline element early
        js = path.read_text(encoding="utf-8").replace("</script", "<\\/script")
        scripts.append(f"<script>/* {name}, see flows/vendor/README.md */\n{js}\n</script>")
    versions = ", ".join(f"{k} {v}" for k, v in VENDOR_VERSIONS.items())
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>relmine: dvc plots</title>\n'
        + "\n".join(scripts)
        + "\n<style>body{font-family:sans-serif} table{border-spacing:15px}</style>\n</head>\n<body>\n"
        + f"<!-- offline page: {versions} inlined -->\n{{plot_divs}}\n</body>\n</html>\n"
    )


def _inline_images(html: str, html_dir: Path) -> str:
    """Replace relative <img src> by data URIs so the page is a single portable file."""

    def repl(m: re.Match) -> str:
        src = m.group(2)
        if src.startswith("data:") or re.match(r"^[a-z]+://", src, re.IGNORECASE):
            return m.group(0)
        path = (html_dir / src).resolve()
        if not path.is_file():
            return m.group(0)
        mime = mimetypes.guess_type(path.name)[0] or "image/png"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"{m.group(1)}data:{mime};base64,{data}{m.group(3)}"

    return IMG_SRC.sub(repl, html)


def plots_html(
    base: str = "HEAD~1", repo: str | Path = ".", out: str | Path = "reports/diff/plots.html"
) -> Path:
    """Write the offline ``dvc plots diff`` page comparing ``base`` with the workspace."""
    repo = Path(repo)
    out = repo / out if not Path(out).is_absolute() else Path(out)
    revs = [base] if revision_exists(base, repo) else []  # none: plots of the workspace only
    with tempfile.TemporaryDirectory(prefix="relmine-plots-") as tmp:
        tmpl = Path(tmp) / "template.html"
        tmpl.write_text(offline_template(), encoding="utf-8")
        out_dir = Path(tmp) / "out"
        proc = _run(
            dvc_cmd() + ["plots", "diff", *revs, "--html-template", str(tmpl), "-o", str(out_dir)], repo
        )
        index = out_dir / "index.html"
        if proc.returncode != 0 or not index.exists():
            raise DiffError(
                f"`dvc plots diff` failed in {repo}:\n{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        html = index.read_text(encoding="utf-8")
        head, sep, body = html.partition("<body>")  # images live in the body, not in the inlined libraries
        html = head + sep + _inline_images(body, out_dir) if sep else _inline_images(html, out_dir)
    html = REMOTE_SCRIPT.sub("", html)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html)
    return out


def write_diff_report(
    base: str = "HEAD~1", repo: str | Path = ".", out_dir: str | Path = "reports/diff", plots: bool = True
) -> DiffReport:
    repo = Path(repo)
    out_dir = Path(out_dir) if Path(out_dir).is_absolute() else repo / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / "metrics.md"
    atomic_write_text(md_path, metrics_markdown(base, repo))
    log.info("wrote %s", md_path)
    html_path = plots_html(base, repo, out_dir / "plots.html") if plots else None
    if html_path:
        log.info("wrote %s", html_path)
    return DiffReport(md_path, html_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="metrics/params/plots diff of the workspace against a git revision"
    )
    parser.add_argument(
        "--base", default=os.environ.get("BASE", "HEAD~1"), help="git revision (default HEAD~1)"
    )
    parser.add_argument("--out", default="reports/diff", help="output folder (default reports/diff)")
    parser.add_argument("--repo", default=".", help="project root (default: current folder)")
    parser.add_argument("--no-plots", action="store_true", help="only the markdown report")
    parser.add_argument("--write-template", metavar="PATH",
                        help="only write the offline HTML template (what .dvc/config's plots.html_template names)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.write_template:
            atomic_write_text(args.write_template, offline_template())
            print(args.write_template)
            return
        report = write_diff_report(args.base, args.repo, args.out, plots=not args.no_plots)
    except DiffError as exc:
        print(f"relmine: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(report.metrics_md)
    if report.plots_html:
        print(report.plots_html)


if __name__ == "__main__":
    main()

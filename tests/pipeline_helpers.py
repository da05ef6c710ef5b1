"""Helpers for the tests that read dvc.yaml or run the real `dvc repro` (no torch import here)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

TEMPLATE = re.compile(r"\$\{([\w.]+)\}")


def run_cmd(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def _lookup(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value[part]
    return value


def resolve(text: str, params: dict) -> str:
    """A dvc.yaml string with its ${section.key} filled in from params, as DVC does."""
    return TEMPLATE.sub(lambda m: str(_lookup(params, m.group(1))), text)


def _entries(items: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in items]


def stage_paths(dvc_yaml: Path, params: dict, kinds: tuple[str, ...] = ("outs", "metrics", "plots")
                ) -> dict[str, list[str]]:
    """stage -> the paths of ``kinds`` (outs, metrics, plots, deps) it declares, resolved."""
    spec = yaml.safe_load(dvc_yaml.read_text())
    return {name: [resolve(p, params) for kind in kinds for p in _entries(stage.get(kind, []))]
            for name, stage in spec["stages"].items()}

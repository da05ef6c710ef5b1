"""A domain is files, not code: domains/<name>/ holds a byte-identical copy of dvc.yaml, its own
params.yaml, patterns and lists, and writes only inside its folder. (The real `dvc repro` of the
example domain next to the default one is in test_pipeline.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline_helpers import stage_paths

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = sorted(p.parent for p in (ROOT / "domains").glob("*/dvc.yaml"))


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        # values that are mappings keyed by a domain's own types or files are settings, not keys
        if isinstance(v, dict) and k not in ("type_map", "label_map", "gold_sets", "tagger_min_confidence",
                                             "no_relation_prior", "pu_prior"):
            out |= _keys(v, f"{prefix}{k}.")
    return out


def test_there_is_an_example_domain():
    assert [d.name for d in DOMAINS] == ["methods"]


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_a_domain_copies_dvc_yaml_and_names_every_key_of_params(domain):
    assert (domain / "dvc.yaml").read_text() == (ROOT / "dvc.yaml").read_text(), (
        f"{domain}/dvc.yaml differs from dvc.yaml: copy it again (cp dvc.yaml {domain.relative_to(ROOT)}/)")
    root = yaml.safe_load((ROOT / "params.yaml").read_text())
    mine = yaml.safe_load((domain / "params.yaml").read_text())
    assert _keys(mine) == _keys(root), "keys only in one of the two params files: " + ", ".join(
        sorted(_keys(mine) ^ _keys(root)))
    rel = domain.relative_to(ROOT).as_posix()
    assert mine["domain"]["params"] == f"{rel}/params.yaml"
    assert (domain / mine["domain"]["wdir"]).resolve() == ROOT


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_a_domain_writes_only_inside_its_folder(domain):
    rel = domain.relative_to(ROOT).as_posix()
    params = yaml.safe_load((domain / "params.yaml").read_text())
    root_paths = {p for ps in stage_paths(ROOT / "dvc.yaml", yaml.safe_load((ROOT / "params.yaml").read_text()))
                  .values() for p in ps}
    for stage, paths in stage_paths(domain / "dvc.yaml", params).items():
        for p in paths:
            assert p.startswith(f"{rel}/"), f"{stage} writes {p}, outside {rel}/"
            assert p not in root_paths
    for section in ("extract", "review", "importer"):  # the flows that are not DVC stages
        for key, value in params[section].items():
            if isinstance(value, str) and "/" in value:
                assert value.startswith(f"{rel}/"), f"{section}.{key} = {value} is not this domain's"

"""Validation of params.yaml sections, with errors that name the key and the fix.

Each stage declares a dataclass of its params; ``parse_params`` checks a raw dict
against it: unknown keys, missing keys, wrong types and out-of-range values raise
``ParamsError`` with a message naming ``<section>.<key>``. ``load_yaml`` refuses a
top-level section no stage reads (``trian:``), with the closest known name.
"""
from __future__ import annotations

import dataclasses
import logging
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    pass


# the top-level sections of params.yaml: one per stage or command, plus ``run`` (how flows
# execute); a misspelt one (``trian:``) would otherwise be ignored and its stage run on defaults
SECTIONS = ("domain", "run", "mine", "entities", "knowledge", "relations", "label_model", "split", "augment", "train",
            "evaluate", "calibrate", "extract", "review", "importer", "ingest")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found; run from the project root or pass --params")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of stage sections")
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:
        raise ParamsError(f"{path}: unknown section(s) " + "; ".join(_did_you_mean(str(k)) for k in unknown)
                          + f"; sections: {', '.join(SECTIONS)}; fix: rename or remove it")
    if "domain" in data:
        check_domain(parse_params(DomainParams, data["domain"], "domain"), path)
    return data


@dataclasses.dataclass
class DomainParams:
    """``domain`` section: where this params file sits, read by dvc.yaml (``${domain.wdir}``,
    ``${domain.params}``); the flows only check it."""

    name: str = "palaeontology"
    wdir: str = "."  # the project root, relative to the dvc.yaml beside this params file
    params: str = "params.yaml"  # this params file, relative to the project root

    def check(self) -> None:
        if Path(self.wdir).is_absolute() or Path(self.params).is_absolute():
            raise ValueError("wdir and params must be relative paths (the project moves with its clone)")


def check_domain(domain: DomainParams, path: Path) -> None:
    """A domain folder copied from another keeps the other's ``domain.params``: dvc.yaml would
    then run this domain's stages with the other domain's params. Warn when it names another file."""
    named, here = Path(domain.params).resolve(), path.resolve()
    if named != here and named.exists() and Path.cwd().resolve() in here.parents:
        logging.getLogger("relmine.params").warning(
            "%s: domain.params is %r, which is not this file; dvc.yaml passes domain.params to every stage; fix: "
            "set domain.params to this file's path from the project root", path, domain.params)


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, SECTIONS, n=1, cutoff=0.6)
    return f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")


def _check_type(value: Any, tp: Any) -> bool:
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return any(_check_type(value, a) for a in get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in get_args(tp)
    if origin in (list, tuple):
        args = get_args(tp)
        return isinstance(value, (list, tuple)) and (not args or all(_check_type(v, args[0]) for v in value))
    if origin is dict:
        k, v = get_args(tp) or (Any, Any)
        return isinstance(value, dict) and all(_check_type(a, k) and _check_type(b, v) for a, b in value.items())
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def parse_params(cls: type[T], raw: dict[str, Any] | None, section: str) -> T:
    """Build dataclass ``cls`` from ``raw``; raise ParamsError naming the bad key."""
    raw = dict(raw or {})
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ParamsError(
            f"params.yaml: unknown key(s) {', '.join(section + '.' + u for u in unknown)}; "
            f"allowed keys: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, f in known.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
                raise ParamsError(f"params.yaml: missing required key {section}.{name}")
            continue
        value, tp = raw[name], hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = parse_params(tp, value, f"{section}.{name}")
        elif not _check_type(value, tp):
            raise ParamsError(
                f"params.yaml: {section}.{name} = {value!r} has the wrong type; expected {_type_name(tp)}"
            )
        if tp is float and isinstance(value, int):
            value = float(value)
        kwargs[name] = value
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except ValueError as exc:
            raise ParamsError(f"params.yaml: {section}: {exc}") from exc
    return obj


def _type_name(tp: Any) -> str:
    if get_origin(tp) is typing.Literal:  # "expected Literal" tells the user nothing
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# inference precisions a params file may name; int8 = dynamic int8 quantization of the
# Linear layers on CPU: faster, and it changes some decisions (reports/bench.md)
INFERENCE_DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")
# pairs per inference pass: the fastest of those measured on CPU; raise it on a GPU
INFER_BATCH_SIZE = 32


def check_inference_dtype(dtype: str) -> None:
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(INFERENCE_DTYPES)}, not {dtype!r}")


@dataclasses.dataclass
class RunParams:
    """``run`` section: how flows execute, shared by the mapped stages."""

    task_runner: Literal["threads", "dask"] = "threads"
    max_workers: int = 2
    dask_address: str | None = None  # an existing cluster, e.g. tcp://10.0.0.5:8786
    dask_workers: int = 2  # size of the local cluster when no address is given
    cache_dir: str = ".relmine-cache"

    def check(self) -> None:
        if self.max_workers < 1:
            raise ValueError("max_workers must be >= 1")

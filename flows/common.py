"""What every flow shares: params loading, the task runner, logging and CLI args."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from stages.errors import InputError
from stages.params import ParamsError, RunParams, load_yaml, parse_params

PARAMS_FILE = os.environ.get("RELMINE_PARAMS", "params.yaml")


def load_section(section: str, path: str | Path | None = None) -> dict[str, Any]:
    data = load_yaml(path or PARAMS_FILE)
    if section not in data:
        raise ParamsError(f"{path or PARAMS_FILE}: missing section '{section}'")
    return data[section] or {}


def load_params(cls: type, section: str, path: str | Path | None = None):
    return parse_params(cls, load_section(section, path), section)


def load_run_params(path: str | Path | None = None) -> RunParams:
    data = load_yaml(path or PARAMS_FILE)
    return parse_params(RunParams, data.get("run", {}), "run")


def make_task_runner(run: RunParams):
    """Threads by default; Dask for scale-out (an existing cluster via dask_address or
    RELMINE_DASK_ADDRESS, else a local cluster of dask_workers processes)."""
    address = os.environ.get("RELMINE_DASK_ADDRESS") or run.dask_address
    if run.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": run.dask_workers, "threads_per_worker": 1, "processes": True}
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=run.max_workers)


def cli_args(description: str, extra: list[tuple[list[str], dict[str, Any]]] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: params.yaml)")
    for names, kwargs in extra or []:
        parser.add_argument(*names, **kwargs)
    return parser.parse_args()


def run_main(fn, *args, **kwargs) -> None:
    """Run a flow entry point; turn our validation errors into a one-line message and exit 2."""
    # Prefect has configured logging by now, so basicConfig would do nothing: give our own
    # loggers (stages.*, relmine.*) a console handler, so progress lines show up.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"))
    for name in ("stages", "relmine", "flows"):
        lg = logging.getLogger(name)
        if not lg.handlers:
            lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    # at exit Prefect drains its event queue and warns "Still processing items" when a short
    # run ends with events queued; they are still sent, so the warning is only noise
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)
    try:
        _temporary_server_to_log(fn)
        with _no_flow_heartbeats():
            fn(*args, **kwargs)
    except (ParamsError, InputError) as exc:
        print(f"relmine: error: {exc}", file=sys.stderr)
        sys.exit(2)


TEMPORARY_SERVER_START_S = 120  # seconds a temporary server may take to answer (see below)


def _temporary_server_to_log(fn) -> None:
    """Start Prefect's temporary server, when ``fn`` is the program's entry point (``python -m
    flows.X``) and no server answers, with its output in PREFECT_HOME/temporary-server.log.

    Prefect starts it at the first API call anyway (the same singleton is reused), but with
    our terminal as its output: its shutdown at exit cancels its event recorder mid-write and
    prints asyncio tracebacks there. ``make server`` (flows/local.py) avoids the start-up cost.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    entry_point = getattr(fn, "__module__", None) == "__main__"
    if not entry_point or PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    from flows.local import prefect_home

    log = prefect_home() / "temporary-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("relmine").info("no Prefect server answers: starting a temporary one "
                                      "(`make server` keeps one up); its log: %s", log)
    with _output_to(log):  # the server process inherits these descriptors
        # Prefect waits 20 s by default; a first start in a new PREFECT_HOME builds the database and
        # took about that long on a 2-core machine (a CI clone timed out on it)
        SubprocessASGIServer().start(timeout=max(TEMPORARY_SERVER_START_S,
                                                 PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))


@contextlib.contextmanager
def _output_to(path: Path):
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def _no_flow_heartbeats():
    """Flow-run heartbeats off for one-shot CLI runs (DVC stages, extract, review).

    Prefect's heartbeat thread sleeps in 1 s steps and is joined when the flow ends, which
    adds up to 1 s to every stage. Heartbeats exist to flag crashed runs of deployments
    that a worker watches; a stage run by `dvc repro` reports its own crash. Served
    deployments (flows.ingest serve) keep them. RELMINE_PREFECT_HEARTBEATS=1 keeps them here too.
    """
    if os.environ.get("RELMINE_PREFECT_HEARTBEATS") == "1":
        return contextlib.nullcontext()
    import prefect.settings as ps

    return ps.temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def new_tmp_dir(out: Path) -> Path:
    """A fresh sibling folder to build ``out`` in (same filesystem, so the swap is a rename)."""
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    return tmp


def swap_dir(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with two renames, so readers never see a half-built folder."""
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)

"""Overhead of the machinery around the stages: a no-op ``dvc repro`` and Prefect per stage.

    python -m benchmarks.bench_overhead [--quick] [--out reports/bench/overhead.json]

* ``noop_repro``: ``dvc repro`` of the whole pipeline when everything is up to date (goal < 3 s).
  Measured only when ``dvc status`` says the pipeline is up to date (after ``make run``);
  otherwise skipped with the reason, so the benchmark never starts a real pipeline run.
* ``prefect``: for each stage, a fresh ``python`` process running a trivial flow named after the
  stage, with the stage's task runner (threads, or Dask when ``run.task_runner: dask``; the mapped
  stages map a no-op task over 2 items), minus the same process doing the same no-op work without
  Prefect. Once against a local persistent server (PREFECT_API_URL when it answers, else one
  started for the benchmark) and once with no API URL, where Prefect starts its temporary server
  itself (what each stage pays when nothing is running). Goal: < 3 s per stage with the local server.

Each figure: median of 3 runs with the spread (max - min), after one unmeasured warm-up run per
mode (first-use costs such as the database migration of a new PREFECT_HOME). ``--quick``: one run,
one stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from stages.records import atomic_write_json  # noqa: E402

STAGES = ["mine", "entities", "relations", "split", "augment", "train", "evaluate"]
MAPPED = {"mine", "entities", "relations", "augment"}  # the stages whose flows use make_task_runner
NOOP_REPRO_GOAL_S = 3.0
STAGE_OVERHEAD_GOAL_S = 3.0
OUT = ROOT / "reports" / "bench" / "overhead.json"


def _env(**extra: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _timed(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return elapsed, proc.stdout + proc.stderr


def _stats(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(times), 3),
        "spread_s": round(max(times) - min(times), 3),
        "runs_s": [round(t, 3) for t in times],
    }


# ---------------------------------------------------------------- probe (runs in the child process)


def _noop(x: int) -> int:
    return x


def probe(stage: str, with_prefect: bool) -> None:
    """The measured child: the stage's trivial flow, or the same work without Prefect."""
    items = [0, 1] if stage in MAPPED else [0]
    if not with_prefect:
        [_noop(i) for i in items]
        return
    from prefect import flow, task

    from flows.common import load_run_params, make_task_runner, run_main

    noop_task = task(name=f"{stage}-noop")(_noop)

    def body() -> list[int]:
        if stage in MAPPED:
            return [f.result() for f in noop_task.map(items)]
        return [noop_task(0)]

    trivial = flow(name=stage)(body)
    if stage in MAPPED:
        trivial = trivial.with_options(task_runner=make_task_runner(load_run_params(ROOT / "params.yaml")))
    out: list[int] = []
    run_main(lambda: out.extend(trivial()))  # the stages' entry point, with its Prefect settings
    assert out == items


# ---------------------------------------------------------------- measurements


def bench_noop_repro(reps: int, repo: Path = ROOT) -> dict[str, Any]:
    env = _env()
    dvc = [sys.executable, "-m", "dvc"]
    _, status = _timed(dvc + ["status", "--json"], env, repo)
    pending = json.loads(status[status.find("{") :] or "{}") if "{" in status else {}
    if pending:
        return {
            "skipped": f"pipeline not up to date ({', '.join(sorted(pending))}): run `make run` first, "
            "a no-op repro needs an up-to-date workspace",
            "goal_s": NOOP_REPRO_GOAL_S,
        }
    times = []
    for _ in range(reps):
        elapsed, out = _timed(dvc + ["repro"], env, repo)
        if "Running stage" in out:
            raise RuntimeError(f"`dvc repro` was not a no-op:\n{out[-2000:]}")
        times.append(elapsed)
    res = _stats(times)
    # the floor: starting the dvc CLI at all
    startup = _stats([_timed(dvc + ["--version"], env, repo)[0] for _ in range(reps)])["median_s"]
    return {
        **res,
        "dvc_cli_startup_s": startup,
        "repo": str(repo),
        "goal_s": NOOP_REPRO_GOAL_S,
        "meets_goal": res["median_s"] < NOOP_REPRO_GOAL_S,
    }


def _probe_cmd(stage: str, with_prefect: bool) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_overhead", "--probe", stage] + (
        [] if with_prefect else ["--bare"]
    )


def _overhead(stage: str, env: dict[str, str], reps: int) -> dict[str, Any]:
    _timed(_probe_cmd(stage, True), env)  # warm-up: first use of this PREFECT_HOME, OS file cache
    with_prefect, bare = [], []
    for _ in range(reps):  # interleaved, so a load change on the machine hits both
        with_prefect.append(_timed(_probe_cmd(stage, True), env)[0])
        bare.append(_timed(_probe_cmd(stage, False), env)[0])
    overhead = [w - b for w, b in zip(with_prefect, bare)]
    return {
        **_stats(overhead),
        "process_with_prefect_s": _stats(with_prefect)["median_s"],
        "process_without_s": _stats(bare)["median_s"],
    }


def bench_prefect(stages: list[str], reps: int) -> dict[str, Any]:
    from flows.server import healthy, start_server, stop_pid

    results: dict[str, Any] = {}
    per_stage: dict[str, Any] = {}
    home = Path(tempfile.mkdtemp(prefix="relmine-bench-prefect-"))
    started = None
    try:
        url = os.environ.get("PREFECT_API_URL")
        if not (url and healthy(url)):
            proc, url = start_server(home=home / "server")
            started = proc.pid
        local_env = _env(PREFECT_API_URL=url)
        # no API URL: Prefect starts (and stops) a temporary server in each process
        # (a loaded machine can need more than the default 20 s to start one: a failure, not a figure)
        temp_env = _env(
            PREFECT_API_URL=None,
            PREFECT_HOME=str(home / "temporary"),
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        )
        # the part of every stage's overhead that is just `import prefect`
        imp = [
            _timed([sys.executable, "-c", "import prefect"], local_env)[0]
            - _timed([sys.executable, "-c", "pass"], local_env)[0]
            for _ in range(reps)
        ]
        results["prefect_import"] = _stats(imp)
        for i, stage in enumerate(stages, 1):
            fig = {
                "local_server": _overhead(stage, local_env, reps),
                "temporary_server": _overhead(stage, temp_env, reps),
            }
            local = fig["local_server"]["median_s"]
            fig["meets_goal"] = local < STAGE_OVERHEAD_GOAL_S
            per_stage[stage] = fig
            print(
                f"prefect overhead {i}/{len(stages)} {stage}: local server {local:.2f} s, "
                f"temporary server {fig['temporary_server']['median_s']:.2f} s",
                file=sys.stderr,
            )
        results["stages"] = per_stage
        results["local_server_source"] = "PREFECT_API_URL" if started is None else "started for the benchmark"
    finally:
        if started:
            stop_pid(started)
        shutil.rmtree(home, ignore_errors=True)
    return results


def run(quick: bool = False, out: str | Path = OUT, repo: str | Path = ROOT) -> dict[str, Any]:
    """All figures; ``repo``: the reproduced project whose no-op ``dvc repro`` is timed."""
    reps = 1 if quick else 3
    stages = STAGES[:1] if quick else STAGES
    run_cfg = {}
    try:
        from flows.common import load_run_params

        run_cfg = {"task_runner": load_run_params(ROOT / "params.yaml").task_runner}
    except Exception as exc:  # the figures still mean something; say why the runner is unknown
        run_cfg = {"task_runner": f"unknown ({exc})"}
    result = {
        "machine": {**machine(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "repetitions": reps,
        "quick": quick,
        "run": run_cfg,
        "noop_repro": bench_noop_repro(reps, Path(repo)),
        "prefect_overhead": bench_prefect(stages, reps),
        "goals": {"noop_repro_s": NOOP_REPRO_GOAL_S, "stage_overhead_local_server_s": STAGE_OVERHEAD_GOAL_S},
    }
    # headline figures (for reports/bench.md): the no-op repro, and the worst stage in each mode
    per_stage = result["prefect_overhead"]["stages"]
    result["noop_repro_s"] = result["noop_repro"].get("median_s")
    for mode in ("local_server", "temporary_server"):
        result[f"overhead_{mode}_s"] = max(f[mode]["median_s"] for f in per_stage.values())
    atomic_write_json(out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one run, one stage: a smoke test")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--repo", default=str(ROOT), help="project whose no-op dvc repro is timed (default: this one)"
    )
    parser.add_argument("--probe", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, with_prefect=not args.bare)
        return
    print(json.dumps(run(quick=args.quick, out=args.out, repo=args.repo), indent=2))


if __name__ == "__main__":
    main()

"""Records, atomic writes, the per-item cache and params validation."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from stages.cache import ResultCache, make_key, tree_digest
from stages.params import ParamsError, parse_params
from stages.records import Example, Span, atomic_write_text, read_records, write_jsonl


def _example(**kw):
    text = "Olenellus was found in the Pioche Formation of Nevada."
    d = dict(
        id="d:1:0:27", doc_id="d", sent_id=1, text=text,
        subj=Span(0, 9, "TAXON", "Olenellus"), obj=Span(27, 43, "STRAT", "Pioche Formation"),
        label="occurs_in", rules=["taxon_in_strat"],
    )
    d.update(kw)
    return Example(**d)


def test_examples_round_trip_through_jsonl(tmp_path):
    ex = _example()
    ex.validate()
    path = tmp_path / "out" / "ex.jsonl"
    assert write_jsonl(path, [ex, _example(id="x", label="NO_RELATION")]) == 2
    back = read_records(path, Example)
    assert back[0] == ex and back[1].label == "NO_RELATION"
    assert isinstance(back[0].subj, Span)


def test_example_validate_catches_a_span_that_does_not_match_its_text():
    bad = _example(obj=Span(27, 40, "STRAT", "Pioche Formation"))
    with pytest.raises(ValueError, match="obj span text"):
        bad.validate()


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")

    class Boom(str):
        pass

    with pytest.raises(TypeError):
        atomic_write_text(path, None)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left behind


def test_result_cache_keys_on_every_part(tmp_path):
    cache = ResultCache(tmp_path, "mine")
    k1 = make_key("pdf-digest", {"ocr": True}, "code-v1")
    k2 = make_key("pdf-digest", {"ocr": False}, "code-v1")
    assert k1 != k2
    assert cache.get(k1) is None
    cache.put_text(k1, '{"a": 1}\n')
    assert cache.get(k1).read_text() == '{"a": 1}\n'
    cache.copy_to(k1, tmp_path / "out" / "doc.jsonl")
    assert (tmp_path / "out" / "doc.jsonl").read_text() == '{"a": 1}\n'
    assert tree_digest(tmp_path / "out") != tree_digest(tmp_path / "mine")


@dataclass
class _P:
    name: str
    ratio: float = 0.5
    mode: Literal["a", "b"] = "a"
    tags: list[str] = field(default_factory=list)

    def check(self):
        if not 0 < self.ratio <= 1:
            raise ValueError("ratio must be in (0, 1]")


def test_params_validation_names_the_key_and_the_fix():
    p = parse_params(_P, {"name": "x", "ratio": 1, "tags": ["t"]}, "demo")
    assert p.ratio == 1.0 and isinstance(p.ratio, float)
    with pytest.raises(ParamsError, match=r"unknown key\(s\) demo.rate.*allowed keys"):
        parse_params(_P, {"name": "x", "rate": 1}, "demo")
    with pytest.raises(ParamsError, match="missing required key demo.name"):
        parse_params(_P, {}, "demo")
    with pytest.raises(ParamsError, match="demo.mode = 'c' has the wrong type; expected one of 'a', 'b'"):
        parse_params(_P, {"name": "x", "mode": "c"}, "demo")
    with pytest.raises(ParamsError, match="ratio must be in"):
        parse_params(_P, {"name": "x", "ratio": 3}, "demo")


def test_every_params_section_of_the_project_is_valid():
    """params.yaml parses and its run section validates (stage sections are checked by their tests)."""
    from flows.common import load_run_params

    run = load_run_params()
    assert run.task_runner in ("threads", "dask")


def test_cli_flows_run_without_heartbeats_unless_asked(monkeypatch):
    """Stage entry points turn Prefect's flow heartbeats off (their thread is joined at exit)."""
    from prefect.settings import get_current_settings

    from flows.common import run_main

    def frequency(seen: list) -> None:
        seen.append(get_current_settings().flows.heartbeat_frequency)

    seen: list = []
    monkeypatch.delenv("RELMINE_PREFECT_HEARTBEATS", raising=False)
    run_main(frequency, seen)
    monkeypatch.setenv("RELMINE_PREFECT_HEARTBEATS", "1")
    run_main(frequency, seen)
    assert seen[0] is None and seen[1] == get_current_settings().flows.heartbeat_frequency
    assert seen[1] is not None


# --- Prefect's local settings and the recorded server ----------------------------------


def _stand_in(*args: str):
    """A real process whose command line reads like a Prefect server's, in its own group."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *args], start_new_session=True)


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_local_defaults_keep_prefect_in_the_project_and_quiet(tmp_path):
    from flows.local import ROOT, local_defaults

    got = local_defaults({})
    assert got["PREFECT_HOME"] == str(ROOT / ".prefect")
    assert got["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert got["TORCHINDUCTOR_CACHE_DIR"].startswith(str(ROOT / ".relmine-cache"))
    # what the user set wins, and a set API URL is left alone
    user = {"PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://10.0.0.5:4200/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    assert local_defaults(user) == {"TORCHINDUCTOR_CACHE_DIR": got["TORCHINDUCTOR_CACHE_DIR"]}


def test_a_recorded_server_that_answers_becomes_the_api(tmp_path, prefect_server):
    from flows.local import local_defaults, write_record

    env = {"PREFECT_HOME": str(tmp_path)}
    assert "PREFECT_API_URL" not in local_defaults(env)  # nothing recorded: Prefect's temporary server
    write_record({"api_url": prefect_server, "pid": 1, "owner": None}, tmp_path)
    assert local_defaults(env)["PREFECT_API_URL"] == prefect_server


def test_a_stale_record_is_cleared_and_its_server_stopped(tmp_path):
    from flows.local import read_record, write_record
    from flows.server import clear_stale, free_port

    dead_url = f"http://127.0.0.1:{free_port()}/api"
    left = _stand_in("prefect", "server", "start")
    other = _stand_in("not-a-server")
    try:
        write_record({"api_url": dead_url, "pid": left.pid, "owner": _dead_pid()}, tmp_path)
        clear_stale(tmp_path)
        assert left.wait(timeout=20) is not None and read_record(tmp_path) is None
        # a recorded pid that now belongs to another program is forgotten, not killed
        write_record({"api_url": dead_url, "pid": other.pid, "owner": None}, tmp_path)
        clear_stale(tmp_path)
        assert other.poll() is None and read_record(tmp_path) is None
    finally:
        for p in (left, other):
            p.kill()
            p.wait()


def test_a_server_left_by_a_killed_run_is_adopted_then_stopped(tmp_path, prefect_server, monkeypatch):
    """`make run` killed with -9 leaves its server up: the next run reuses it and stops it."""
    import os

    from flows.local import read_record, write_record
    from flows.server import ensure_server, release

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    left = _stand_in("prefect", "server", "start")  # stands for the left server's process
    try:
        write_record({"api_url": prefect_server, "pid": left.pid, "owner": _dead_pid()}, tmp_path)
        assert ensure_server(tmp_path) == (prefect_server, left.pid)
        assert read_record(tmp_path)["owner"] == os.getpid()
        release(left.pid, tmp_path)
        assert left.wait(timeout=20) is not None and read_record(tmp_path) is None
        # a persistent one (make server, no owner) is reused and left running
        write_record({"api_url": prefect_server, "pid": left.pid, "owner": None}, tmp_path)
        assert ensure_server(tmp_path) == (prefect_server, None)
    finally:
        left.kill()
        left.wait()


def test_a_standalone_flow_without_a_server_exits_quietly(tmp_path):
    """No server answers: Prefect's temporary server serves the run, its output goes to
    PREFECT_HOME/temporary-server.log and nothing of its shutdown reaches the terminal."""
    import os
    import subprocess
    import sys

    from flows.local import ROOT

    code = ("from prefect import flow\nfrom flows.common import run_main\n"
            "@flow(name='quiet')\ndef quiet():\n    print('flow ran')\nrun_main(quiet)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # a first start in a fresh PREFECT_HOME builds the database, which can pass Prefect's 20 s
    # default on a busy machine: run_main waits flows.common.TEMPORARY_SERVER_START_S (no setting here)
    env.update(PREFECT_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "flow ran" in out and "Traceback" not in out and "telemetry" not in out, out
    assert (tmp_path / "temporary-server.log").exists() and (tmp_path / "prefect.db").exists()

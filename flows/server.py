"""Start, reuse or stop a local Prefect server so flows don't each start a temporary one.

    python -m flows.server run -- dvc repro     # server up for the command, then down
    python -m flows.server start                # leave one running (pid in .prefect/server.pid)
    python -m flows.server stop

A server is reused when PREFECT_API_URL already answers, or when the one recorded
in .prefect/server.json is alive. Only a server this command started is stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STATE_DIR = Path(os.environ.get("RELMINE_PREFECT_DIR", ".prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update(
        PREFECT_HOME=str(home.resolve()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
    )
    return env


def start_server(home: Path | None = None, port: int | None = None, wait_s: float = 90) -> tuple[subprocess.Popen, str]:
    """Start `prefect server start` on 127.0.0.1; return (process, api_url) once healthy."""
    home = home or STATE_DIR
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = open(home / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stop() ends uvicorn's children too
    )
    api_url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}; see {home / 'server.log'}")
        if healthy(api_url, timeout=1):
            return proc, api_url
        time.sleep(0.3)
    stop_pid(proc.pid)
    raise RuntimeError(f"prefect server did not answer within {wait_s:.0f} s; see {home / 'server.log'}")


def stop_pid(pid: int, timeout: float = 15) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap if it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def recorded_server() -> str | None:
    state = STATE_DIR / "server.json"
    if state.exists():
        info = json.loads(state.read_text())
        if healthy(info["api_url"]):
            return info["api_url"]
    return None


def ensure_server() -> tuple[str, int | None]:
    """Return (api_url, pid we started or None when reused)."""
    url = os.environ.get("PREFECT_API_URL")
    if url and healthy(url):
        return url, None
    url = recorded_server()
    if url:
        return url, None
    proc, url = start_server()
    return url, proc.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run_p = sub.add_parser("run", help="run a command with a local Prefect server up")
    run_p.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("start", help="start a persistent local server (or report the running one)")
    sub.add_parser("stop", help="stop the server recorded in .prefect/server.json")
    sub.add_parser("status", help="print the API URL of a running server")
    args = parser.parse_args()

    if args.cmd == "run":
        cmd = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
        if not cmd:
            parser.error("run needs a command, e.g. python -m flows.server run -- dvc repro")
        t0 = time.monotonic()
        url, pid = ensure_server()
        print(f"relmine: Prefect server at {url} ({'started' if pid else 'reused'} in {time.monotonic() - t0:.1f} s)", file=sys.stderr)
        try:
            rc = subprocess.call(cmd, env={**os.environ, "PREFECT_API_URL": url})
        finally:
            if pid:
                stop_pid(pid)
        sys.exit(rc)
    elif args.cmd == "start":
        url = recorded_server()
        if url:
            print(url)
            return
        proc, url = start_server()
        (STATE_DIR / "server.json").write_text(json.dumps({"api_url": url, "pid": proc.pid}))
        print(url)
    elif args.cmd == "stop":
        state = STATE_DIR / "server.json"
        if state.exists():
            stop_pid(json.loads(state.read_text())["pid"])
            state.unlink()
    elif args.cmd == "status":
        url = recorded_server()
        print(url or "no server")
        sys.exit(0 if url else 1)


if __name__ == "__main__":
    main()

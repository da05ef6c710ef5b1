"""Start, reuse or stop a local Prefect server.

    python -m flows.server run -- dvc repro     # server up for the command, then down
    python -m flows.server start                # leave one running (recorded in .prefect/server.json)
    python -m flows.server stop
    python -m flows.server status               # its API URL, exit 1 when none answers

Without a server, each ``python -m flows.X`` starts Prefect's temporary server (seconds per
call) and stops it at exit. So a server is reused when PREFECT_API_URL already answers, or
when the one recorded in PREFECT_HOME/server.json answers: importing ``flows`` points
PREFECT_API_URL at it (flows/local.py), so a standalone flow or ``flows.extract`` run after
``make server`` starts nothing.

The record says which process owns the server: none for ``start`` (it stays up), the ``run``
command for its own. A ``run`` killed with -9 leaves its server up; the next ``run`` finds
the owner dead, reuses the server and stops it when done. A record whose server no longer
answers is cleared, and what is left of that server stopped.

Standard library only, so starting a server costs no Prefect import here.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flows.local import forget, healthy, prefect_home, read_record, recorded_server, user_api_url, write_record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    home = home or prefect_home()
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


def alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def is_prefect_server(pid: int) -> bool:
    """Whether ``pid`` is still a Prefect server (a recorded pid may since belong to another program)."""
    if not Path("/proc/self").exists():  # no /proc to ask: trust the record
        return alive(pid)
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"prefect" in b" ".join(args) and b"server" in args


def clear_stale(home: Path | None = None) -> None:
    """Forget a recorded server that no longer answers, and stop what is left of it."""
    info = read_record(home)
    if info is None or healthy(info.get("api_url", ""), timeout=1):
        return
    pid = info.get("pid")
    if pid and is_prefect_server(pid):
        stop_pid(pid)
    forget(home)


def ensure_server(home: Path | None = None) -> tuple[str, int | None]:
    """Return (api_url, pid of the server the caller must stop, or None when it stays up).

    A server left by a ``run`` that was killed is adopted: the caller stops it."""
    url = user_api_url()
    if url and healthy(url):
        return url, None
    clear_stale(home)
    info = read_record(home)
    if info:
        owner = info.get("owner")
        if owner and not alive(owner):
            write_record({**info, "owner": os.getpid()}, home)
            return info["api_url"], info["pid"]
        return info["api_url"], None
    proc, url = start_server(home)
    write_record({"api_url": url, "pid": proc.pid, "owner": os.getpid()}, home)
    return url, proc.pid


def release(pid: int, home: Path | None = None) -> None:
    """Stop a server ``ensure_server`` handed over and forget it, unless ``start`` has
    since made it the persistent one."""
    info = read_record(home)
    if info and info.get("pid") == pid and info.get("owner") is None:
        return
    stop_pid(pid)
    if info and info.get("pid") == pid:
        forget(home)


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
        before = read_record()
        url, pid = ensure_server()
        how = "reused" if not pid else "took over from a killed run" if before and before.get("pid") == pid else "started"
        print(f"relmine: Prefect server at {url} ({how} in {time.monotonic() - t0:.1f} s)", file=sys.stderr)
        try:
            rc = subprocess.call(cmd, env={**os.environ, "PREFECT_API_URL": url})
        finally:
            if pid:
                release(pid)
        sys.exit(rc)
    elif args.cmd == "start":
        clear_stale()
        info = read_record()
        if info:  # already up; one a `run` owns stays up from now on
            write_record({**info, "owner": None})
            print(info["api_url"])
            return
        proc, url = start_server()
        write_record({"api_url": url, "pid": proc.pid, "owner": None})
        print(url)
    elif args.cmd == "stop":
        info = read_record()
        if info:
            if info.get("pid") and is_prefect_server(info["pid"]):
                stop_pid(info["pid"])
            forget()
    elif args.cmd == "status":
        url = recorded_server()
        print(url or "no server")
        sys.exit(0 if url else 1)


if __name__ == "__main__":
    main()

"""Where Prefect keeps its state and which local server answers: the settings every flow
starts with (applied when ``flows`` is imported, before any flow imports Prefect).

Unless the environment sets them: Prefect's home is .prefect/ in the project (git-ignored)
rather than ~/.prefect; the server's telemetry is off (it would try the network at every
start); PREFECT_API_URL is the server ``make server`` recorded when it answers, so a
standalone ``python -m flows.X`` reuses it instead of starting a temporary one; torch's
compile cache sits in the project cache rather than $TMPDIR.

Standard library only: it runs at every flow's start.
"""
from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prefect_home(environ=os.environ) -> Path:
    """PREFECT_HOME when the user set one, else .prefect/ in the project (git-ignored)."""
    return Path(environ.get("PREFECT_HOME") or ROOT / ".prefect")


def local_defaults(environ=os.environ) -> dict[str, str]:
    """The settings a flow gets unless the environment sets them: Prefect's home in the
    project, no telemetry, the recorded server as API, torch's compile cache in the project
    cache."""
    home = prefect_home(environ)
    out = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TORCHINDUCTOR_CACHE_DIR": str(ROOT / ".relmine-cache" / "torchinductor"),
    }
    if not environ.get("PREFECT_API_URL"):
        url = recorded_server(home)
        if url:
            out["PREFECT_API_URL"] = url
    return {k: v for k, v in out.items() if k not in environ}


APPLIED: dict[str, str] = {}  # what apply() set, as against what the user's environment holds


def apply() -> None:
    """Set ``local_defaults`` in this process's environment (once, from flows/__init__.py)."""
    APPLIED.update(local_defaults())
    os.environ.update(APPLIED)


def user_api_url() -> str | None:
    """PREFECT_API_URL when the user (not ``apply``) set it."""
    url = os.environ.get("PREFECT_API_URL")
    return url if url and url != APPLIED.get("PREFECT_API_URL") else None


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def _record_file(home: Path | None = None) -> Path:
    return (home or prefect_home()) / "server.json"


def read_record(home: Path | None = None) -> dict | None:
    try:
        return json.loads(_record_file(home).read_text())
    except (OSError, ValueError):
        return None


def write_record(info: dict, home: Path | None = None) -> None:
    path = _record_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


def forget(home: Path | None = None) -> None:
    _record_file(home).unlink(missing_ok=True)


def recorded_server(home: Path | None = None) -> str | None:
    """The recorded server's API URL when it answers."""
    info = read_record(home)
    if info and healthy(info.get("api_url", ""), timeout=1):
        return info["api_url"]
    return None

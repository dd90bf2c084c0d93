"""Cached virtualenvs for tests that need package sets the test interpreter cannot hold.

A test asks for a virtualenv by name and by the ``pip install`` commands that build it;
``ensure_venv`` returns ``.venvs/<name>`` at the repository root (``OTEL_LLM_SDK_VENVS`` names
another folder). The first call builds it from the package index; later calls reuse it as long as
its marker file records the exact same install commands, Python, source tree and package
metadata, and rebuild it otherwise. The marker is written last, so a build cut short is rebuilt
next time. Builds take a file lock: one at a time across pytest-xdist workers and checkouts
sharing the folder (the editable installs all build from the same source tree).

Scripts run there with ``python -I`` and ``clean_environment()``: nothing from the test's own
interpreter or OTel settings leaks in.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENVS = Path(os.environ.get("OTEL_LLM_SDK_VENVS") or ROOT / ".venvs")
INSTALL_TIMEOUT = 1200
MARKER_FORMAT = 2


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def package_fingerprint() -> str:
    """What the editable install's metadata (entry points, packages, dependencies) is made from."""
    data = pyproject()
    tables = [data["project"], data.get("tool", {}).get("setuptools", {})]
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def clean_environment(**extra: str) -> dict[str, str]:
    """This environment without what would leak the test's own interpreter or OTel settings."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OTEL_", "PYTHON", "PIP_REQUIRE_VIRTUALENV"))
        and name not in {"VIRTUAL_ENV", "__PYVENV_LAUNCHER__"}
    }
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    environment.update(extra)
    return environment


def _run(command: list[str | Path], log: Path, what: str, label: str) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, command))}\n")
        out.flush()
        try:
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_environment(),
                cwd=log.parent,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{label}: {what} took over {INSTALL_TIMEOUT}s (see {log})")
    if done.returncode != 0:
        # pip's WARNING lines (an unreachable extra index, say) would crowd out its ERRORs.
        lines = log.read_text(errors="replace").splitlines()
        tail = "\n".join([text for text in lines if not text.startswith("WARNING:")][-40:])
        pytest.fail(
            f"{label}: {what} failed (exit {done.returncode}); full log in {log}:\n{tail}",
            pytrace=False,
        )


def ensure_venv(
    name: str, installs: Sequence[Sequence[str]], *, label: str, pip_check: bool = True
) -> Path:
    """The virtualenv ``.venvs/<name>``: reused when its marker matches, (re)built otherwise.

    ``installs`` are the argument lists of successive ``pip install`` commands (``--quiet`` is
    added); ``str(ROOT)`` in them names this working tree. ``label`` starts every failure
    message (which SDK line, which instrumentation family broke).
    """
    venv = VENVS / name
    marker = venv / "otel-llm-requirements.json"
    wanted = {
        "format": MARKER_FORMAT,
        "installs": [list(arguments) for arguments in installs],
        "pip_check": pip_check,
        "python": sys.version,
        "base_prefix": sys.base_prefix,
        "source": str(ROOT),
        "package": package_fingerprint(),
    }
    VENVS.mkdir(parents=True, exist_ok=True)
    with (VENVS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if marker.exists() and venv_python(venv).exists():
                try:
                    if json.loads(marker.read_text()) == wanted:
                        return venv
                except ValueError:
                    pass  # a marker cut short: rebuild
            shutil.rmtree(venv, ignore_errors=True)
            log = VENVS / f"{name}.log"
            log.write_text(f"building {venv} for {wanted}\n")
            _run([sys.executable, "-m", "venv", venv], log, "creating the virtualenv", label)
            python = venv_python(venv)
            for arguments in installs:
                _run(
                    [python, "-m", "pip", "install", "--quiet", *arguments],
                    log,
                    f"pip install {' '.join(arguments)}",
                    label,
                )
            if pip_check:
                _run([python, "-m", "pip", "check"], log, "pip check", label)
            partial = marker.with_suffix(".tmp")
            partial.write_text(json.dumps(wanted, indent=2))
            partial.replace(marker)  # written last: a build cut short is rebuilt next time
            return venv
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_script(
    python: Path,
    script: str,
    *args: str,
    label: str,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
) -> str:
    """Run ``script`` with a test virtualenv's isolated interpreter; its stdout, or the test
    fails naming ``label`` with the script's stderr."""
    done = subprocess.run(
        [python, "-I", "-c", script, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"{label}: the script failed (exit {done.returncode}):\n{done.stderr[-6000:]}",
            pytrace=False,
        )
    return done.stdout

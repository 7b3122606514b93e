"""Server processes the stack owns: spawn, watch, stop.

Servers run in their own session, so a Ctrl-C in the terminal reaches only the
supervisor, which then stops them in order (services first, databases last).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Resolved in the parent: a child between fork and exec must not load libraries.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(sig: int) -> Callable[[], None]:
    def set_parent_death_signal() -> None:
        # Runs in the child after any user switch (which would clear the setting),
        # so a killed test session or supervisor never leaves a broker behind.
        _prctl(_PR_SET_PDEATHSIG, sig)

    return set_parent_death_signal


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    die_with_parent: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running server with stdout and stderr appended to `log_file`.

    `die_with_parent` is the signal the server gets if this process dies
    without stopping it; None leaves it running (detached stacks).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - argv is built by the stack, not by users
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=user,
            group=_primary_group(user) if user else None,
            extra_groups=[] if user else None,
            start_new_session=True,
            preexec_fn=_die_with_parent(die_with_parent) if die_with_parent else None,
        )


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


async def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    limit: float = 600.0,
) -> str:
    """Run a short command to completion; return its output, raise with it on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        user=user,
        group=_primary_group(user) if user else None,
        extra_groups=[] if user else None,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{argv[0]} did not finish within {limit:.0f}s") from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {proc.returncode}:\n{last_lines(text, 30)}"
        )
    return text


def last_lines(text: str, count: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-count:])


def log_tail(path: Path, count: int = 30) -> str:
    """The end of a server log, for error messages."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    return last_lines(text, count) or f"(log {path} is empty)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def runs(pid: int, command_marker: str) -> bool:
    """Whether `pid` is alive and its command line contains `command_marker`."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return command_marker in cmdline


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rpartition(")")[2].split()[0] == "Z"


async def stop(
    process: subprocess.Popen[bytes] | int,
    *,
    first: signal.Signals,
    grace: float = 30.0,
    then: signal.Signals = signal.SIGKILL,
) -> None:
    """Send `first`, wait up to `grace` for the process to exit, then send `then`.

    Accepts our own child (reaped as it exits) or a bare pid from a state file.
    """
    pid = process if isinstance(process, int) else process.pid

    def exited() -> bool:
        if isinstance(process, int):
            return not pid_alive(pid)
        return process.poll() is not None

    for sig, wait in ((first, grace), (then, 10.0)):
        if exited():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if exited():
                return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"process {pid} did not exit after {first.name} and {then.name}")

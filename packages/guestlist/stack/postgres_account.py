"""The OS account PostgreSQL runs as when the stack runs as root.

PostgreSQL refuses to run as root, so a root caller hands the data directory
to the unprivileged user `guestlist` and runs the server as that user. That
user must be able to reach both the data and the binaries.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

OS_USER = "guestlist"
# Root-owned and world-readable (not world-writable): copied binaries are reused.
_SHARED_BINARIES = Path("/var/cache/guestlist")


class PostgresStartError(RuntimeError):
    """The server could not be prepared or did not accept connections in time."""


def server_user() -> str | None:
    """The OS user to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        created = subprocess.run(  # noqa: S603 - fixed arguments
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            pwd.getpwnam(OS_USER)  # another process may have created it meanwhile
        except KeyError:
            raise PostgresStartError(
                f"cannot create OS user {OS_USER} for PostgreSQL: {created.stderr.strip()}"
            ) from None
    return OS_USER


def give_data_dir(base_dir: Path, user: str) -> None:
    """Make `user` the owner of everything under `base_dir`."""
    account = pwd.getpwnam(user)
    for path in (base_dir, *base_dir.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
    blocked = _first_blocked_ancestor(base_dir, account)
    if blocked is not None:
        raise PostgresStartError(
            f"PostgreSQL runs as OS user {user} (it refuses root) but {user} cannot enter "
            f"{blocked}; put the data elsewhere or `chmod o+x {blocked}`"
        )


def reachable_binaries(bin_dir: Path, user: str) -> Path:
    """`bin_dir`, or a copy of its installation `user` can execute.

    The pgserver wheel's binaries live in the virtualenv, which may sit under a
    private home directory. Its build is relocatable as long as the layout
    stays: `pgserver/pginstall/{bin,lib,share}` beside `pgserver.libs/`, which
    the binaries find through an $ORIGIN-relative rpath.
    """
    account = pwd.getpwnam(user)
    if _first_blocked_ancestor(bin_dir / "postgres", account) is None:
        return bin_dir
    install = bin_dir.resolve().parent
    # The tree to copy: the install itself, or the wheel's site-packages slice.
    parts = {install.name: install}
    vendored = install.parent.parent / f"{install.parent.name}.libs"
    if vendored.is_dir():
        parts = {f"{install.parent.name}/{install.name}": install, vendored.name: vendored}
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    version = (install / "bin" / "postgres").stat().st_mtime_ns
    target = _SHARED_BINARIES / f"postgres-{digest}-{version}"
    copied_bin = target / next(iter(parts)) / "bin"
    if not (copied_bin / "postgres").exists():
        _SHARED_BINARIES.mkdir(mode=0o755, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=_SHARED_BINARIES, prefix=".copy-"))
        staging.chmod(0o755)
        for relative, source in parts.items():
            shutil.copytree(source, staging / relative, symlinks=True)
        with contextlib.suppress(OSError):  # a concurrent copy won; use it
            staging.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    return copied_bin


def _first_blocked_ancestor(target: Path, account: pwd.struct_passwd) -> Path | None:
    for ancestor in reversed(target.parents):
        info = ancestor.stat()
        if info.st_uid == account.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == account.pw_gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return ancestor
    return None

"""The five Guestlist services as processes of the local stack.

Each runs as `python -m services.<name>` with its settings in the environment;
it applies its own migrations at start-up. Healthy means `/healthz` answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from guestlist.stack import processes
from guestlist.stack.ports import LOOPBACK


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int

    @property
    def database(self) -> str:
        return f"guestlist_{self.name}"

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def health_url(self) -> str:
        return f"{self.url}/healthz"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("identity", 8001),
    ServiceSpec("invitations", 8002),
    ServiceSpec("notifications", 8003),
    ServiceSpec("audit", 8004),
    ServiceSpec("projections", 8005),
)


class ServiceStartError(RuntimeError):
    """A service did not come up; the message names it and says why."""


# Services that fetch personal-data keys from identity with a service token.
KEY_READERS = ("invitations", "notifications", "audit", "projections")


def client_secrets() -> dict[str, str]:
    """One fresh secret per key-reading service, for this run of the local stack only."""
    return {name: secrets.token_urlsafe(32) for name in KEY_READERS}


def service_env(
    spec: ServiceSpec,
    *,
    database_url: str,
    kafka_bootstrap: str,
    smtp_port: int,
    clients: Mapping[str, str] | None = None,
    peers: Sequence[ServiceSpec] = SERVICES,
) -> dict[str, str]:
    """What a service reads at start-up, on top of the caller's environment.

    `peers` says where the other services listen, so a stack on other ports
    (the end-to-end tests choose free ones) still finds identity's keys.
    """
    identity = next(peer for peer in peers if peer.name == "identity")
    invitations = next(peer for peer in peers if peer.name == "invitations")
    audit = next(peer for peer in peers if peer.name == "audit")
    credentials: dict[str, str] = {}
    if clients and spec.name == "identity":
        credentials["SERVICE_CLIENTS"] = ",".join(f"{n}={s}" for n, s in clients.items())
    elif clients and spec.name in clients:
        # audit prefixes its own settings; the others read the plain name.
        prefix = "AUDIT_" if spec.name == "audit" else ""
        credentials[f"{prefix}SERVICE_CLIENT_SECRET"] = clients[spec.name]
    return {
        **credentials,
        "SERVICE_PORT": str(spec.port),
        "HTTP_PORT": str(spec.port),
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SMTP_HOST": LOOPBACK,
        "SMTP_PORT": str(smtp_port),
        "IDENTITY_JWKS_URL": f"{identity.url}/.well-known/jwks.json",
        # Where key readers fetch personal-data keys: identity keeps people's, invitations
        # invitees' (audit prefixes its own settings).
        "IDENTITY_URL": identity.url,
        "AUDIT_IDENTITY_URL": identity.url,
        "INVITATIONS_URL": invitations.url,
        "AUDIT_INVITATIONS_URL": invitations.url,
        # Where the audit log is read from (a person's data export, projections rebuilds).
        "AUDIT_URL": audit.url,
        # Identity's address, where notifications point confirmation and reset links.
        "IDENTITY_PUBLIC_URL": identity.url,
        "PYTHONUNBUFFERED": "1",
    }


def launch(
    spec: ServiceSpec,
    env: Mapping[str, str],
    *,
    log_file: Path,
    die_with_parent: bool,
) -> subprocess.Popen[bytes]:
    if not _has_main(spec):
        raise ServiceStartError(
            f"{spec.name}: there is no runnable module {spec.module} "
            f"(services/{spec.name}/__main__.py is missing)"
        )
    return processes.spawn(
        [sys.executable, "-m", spec.module],
        log_file=log_file,
        env={**os.environ, **env},
        die_with_parent=signal.SIGTERM if die_with_parent else None,
    )


def _has_main(spec: ServiceSpec) -> bool:
    # Look for the file rather than import the package: a broken import is the
    # service's own start-up error, reported from its log.
    package = importlib.util.find_spec("services")
    roots = package.submodule_search_locations if package else None
    return any((Path(root) / spec.name / "__main__.py").is_file() for root in roots or ())


async def wait_healthy(
    spec: ServiceSpec, process: subprocess.Popen[bytes], log_file: Path, ready_within: float
) -> None:
    deadline = time.monotonic() + ready_within
    last_error = "no answer yet"
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceStartError(
                    f"{spec.name} exited with {process.returncode} during start-up; "
                    f"end of {log_file}:\n{processes.log_tail(log_file, 15)}"
                )
            try:
                response = await client.get(spec.health_url)
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}"
            else:
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            await asyncio.sleep(0.3)
    raise ServiceStartError(
        f"{spec.name}: {spec.health_url} did not answer 200 within {ready_within:.0f}s "
        f"({last_error}); end of {log_file}:\n{processes.log_tail(log_file, 15)}"
    )


async def healthy(url: str) -> bool:
    """One probe, for `guestlist status`."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False

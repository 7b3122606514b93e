"""The state file of a running local stack (`var/stack.json`).

It lets `guestlist down` and `guestlist status` find, from another process,
what `guestlist up` started: pids, ports and how to stop each part.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Component:
    """One running part of the stack."""

    name: str
    kind: str  # postgres | kafka | smtp | service
    url: str
    port: int
    pid: int | None = None  # None: an external server the stack does not own
    stop_signal: str = "SIGTERM"
    # Sent when stop_signal was not enough; postgres wants SIGQUIT to take its backends along.
    last_signal: str = "SIGKILL"
    # A word of the process's command line: a stale state file must not make
    # `guestlist down` signal an unrelated process that reuses the pid.
    command_marker: str = ""
    health_url: str | None = None
    log: str | None = None


@dataclass
class StackState:
    # The foreground `guestlist up` that supervises the stack; None when detached.
    supervisor_pid: int | None
    components: list[Component] = field(default_factory=list)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(partial, path)

    @classmethod
    def read(cls, path: Path) -> StackState | None:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return cls(
            supervisor_pid=raw.get("supervisor_pid"),
            components=[Component(**c) for c in raw.get("components", [])],
        )

    @staticmethod
    def forget(path: Path) -> None:
        """The stack is stopped: remove its state file."""
        path.unlink(missing_ok=True)

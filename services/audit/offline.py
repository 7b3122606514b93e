"""Verify an NDJSON export of the audit log offline: only the file and the public key.

Needs nothing of Guestlist: the standard library, ``rfc8785`` and
``cryptography``. Usage: ``python -m services.audit.offline export.ndjson
[--public-key BASE64]``. The procedure (services/audit/README.md):

1. for a full line: drop ``prev_hash`` and ``hash``, ``entry_sha256`` =
   SHA-256 of the RFC 8785 form of the rest; for a short line, take its
   ``entry_sha256``;
2. ``hash`` must be SHA-256 of RFC 8785 ``{"entry_sha256", "prev_hash"}``
   (hex), and ``prev_hash`` the previous line's ``hash``; sequences go up by one;
3. the last line's checkpoint must sign (Ed25519) its ``statement``, whose
   ``head_hash`` and ``sequence`` are those of the last entry line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class OfflineReport:
    ok: bool
    entries: int
    first_bad_sequence: int | None
    reason: str | None


def verify_lines(lines: Iterable[str], public_key: str | None = None) -> OfflineReport:
    """``public_key`` (base64, raw Ed25519) is the one you trust; default: the file's own."""
    prev: str | None = None
    expected: int | None = None
    shown = 0
    last_sequence: int | None = None
    for raw in lines:
        if not raw.strip():
            continue
        line = json.loads(raw)
        if "checkpoint" in line:
            return _check_checkpoint(line, public_key or line["public_key"], last_sequence, prev,
                                     shown)
        sequence = line["sequence"]
        if expected is not None and sequence != expected:
            return OfflineReport(False, shown, expected, f"sequence {expected} is missing")
        if prev is not None and line["prev_hash"] != prev:
            return OfflineReport(False, shown, sequence, "prev_hash is not the previous hash")
        if "entry_sha256" in line:
            entry_sha256 = line["entry_sha256"]
        else:
            shown += 1
            content = {k: v for k, v in line.items() if k not in ("prev_hash", "hash")}
            entry_sha256 = hashlib.sha256(rfc8785.dumps(content)).hexdigest()
        link = rfc8785.dumps({"entry_sha256": entry_sha256, "prev_hash": line["prev_hash"]})
        if hashlib.sha256(link).hexdigest() != line["hash"]:
            return OfflineReport(False, shown, sequence, "hash does not match the entry")
        prev, expected, last_sequence = line["hash"], sequence + 1, sequence
    return OfflineReport(False, shown, None, "the export has no checkpoint at its end")


def _check_checkpoint(
    line: dict[str, object], public_key: str, last_sequence: int | None, head: str | None,
    shown: int,
) -> OfflineReport:
    checkpoint = line["checkpoint"]
    assert isinstance(checkpoint, dict)
    statement = json.loads(checkpoint["statement"])
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    try:
        key.verify(base64.b64decode(checkpoint["signature"]), checkpoint["statement"].encode())
    except InvalidSignature:
        return OfflineReport(False, shown, statement["sequence"], "checkpoint signature is bad")
    if statement["sequence"] != last_sequence or statement["head_hash"] != head:
        return OfflineReport(False, shown, statement["sequence"],
                             "the checkpoint does not sign the export's last hash")
    return OfflineReport(True, shown, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--public-key", help="base64 Ed25519 key you trust (default: the file's)")
    arguments = parser.parse_args()
    with open(arguments.export, encoding="utf-8") as lines:
        report = verify_lines(lines, arguments.public_key)
    print(json.dumps(asdict(report)))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()

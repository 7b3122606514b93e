"""An export streams the log with its covering checkpoint and verifies offline, with only
the file and the public key; a filtered export still verifies; an edited file does not."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from eventkit.personal_data import new_data_key
from eventkit.testing.consumer_contract import eventually
from services.audit.offline import verify_lines
from tests.integration.test_audit_api import Audit, audit, registered

pytestmark = pytest.mark.integration
__all__ = ["audit"]  # the fixture, shared with the API tests


async def test_an_ndjson_export_verifies_offline_and_is_recorded(
    audit: Audit, tmp_path: Path
) -> None:
    key = new_data_key()
    await audit.publish([registered(p, n, key) for n in range(1, 13) for p in ("alice", "bob")])
    public_key = (await audit.client.get("/v1/audit/checkpoints/key")).json()["public_key"]
    answer = await audit.client.get("/v1/audit/export", params={"to": "15"}, headers=audit.auth)
    assert answer.status_code == 200, answer.text
    exported = tmp_path / "export.ndjson"
    exported.write_bytes(answer.content)
    lines = answer.text.splitlines()

    # The documented procedure, as a third party runs it: the file and the key, nothing else.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.audit.offline", str(exported), "--public-key", public_key,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert json.loads(output)["entries"] == 15
    assert json.loads(lines[-1])["checkpoint"]["sequence"] == 20  # the one covering entry 15

    forged = [line.replace('"ce_subject":"bob"', '"ce_subject":"eve"', 1) for line in lines]
    report = verify_lines(forged, public_key)
    first_bob = next(json.loads(line)["sequence"] for line in lines if '"ce_subject":"bob"' in line)
    assert (report.ok, report.first_bad_sequence) == (False, first_bob)

    async def recorded() -> bool:
        return bool(await audit.db.fetchval(
            "SELECT count(*) FROM audit_log WHERE ce_type = 'guestlist.audit.AuditLogExported.v1'"
        ) == 1)

    await eventually(recorded, 60)


async def test_a_filtered_export_shows_only_matches_and_still_verifies(audit: Audit) -> None:
    key = new_data_key()
    await audit.publish([registered(p, n, key) for n in range(1, 6) for p in ("alice", "bob")])
    answer = await audit.client.get("/v1/audit/export", params={"subject": "alice"},
                                    headers=audit.auth)
    entries = [json.loads(line) for line in answer.text.splitlines()[:-1]]
    shown = [e for e in entries if "ce_subject" in e]

    assert {e["ce_subject"] for e in shown} == {"alice"} and len(shown) == 5
    assert all("data" not in e for e in entries if "entry_sha256" in e)  # bob stays hidden
    assert verify_lines(answer.text.splitlines()).ok


async def test_a_csv_export_and_bad_ranges(audit: Audit) -> None:
    key = new_data_key()
    await audit.publish([registered("alice", n, key) for n in range(1, 4)])
    as_csv = await audit.client.get("/v1/audit/export", params={"format": "csv"},
                                    headers=audit.auth)
    backwards = await audit.client.get("/v1/audit/export", params={"from": "3", "to": "2"},
                                       headers=audit.auth)
    viewer_only = await audit.client.get(
        "/v1/audit/export", headers={"Authorization": "Bearer x"})

    rows = as_csv.text.splitlines()
    assert rows[0].startswith("sequence,received_at,topic")
    assert len(rows) == 1 + 3 + 1 and rows[-1].startswith("checkpoint,")
    assert (backwards.status_code, backwards.json()["errors"][0]["field"]) == (422, "from")
    assert viewer_only.status_code == 401

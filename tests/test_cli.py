"""The `auditlake` command line, run in-process: against the demo workspace (vendor simulators on loopback, AWS on
moto) and against a "deployed" stack found by name in moto's CloudFormation."""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import io
import json
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aws_calls
import boto3
import iam_model
import pytest
import requests
from botocore.client import BaseClient
from botocore.response import StreamingBody
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from moto.athena.models import athena_backends
from moto.sns.models import sns_backends
from worlds import deploy, world_of

import auditlake_vendors
from auditlake.state import StateStore, StreamKey
from auditlake_cli import doctor, errors, main, output, target
from auditlake_cli.commands import backfill
from auditlake_cli.commands import verify as verify_command
from auditlake_cli.probe import build_adapter
from auditlake_cli.verify import GAP, Verifier, load_public_key
from auditlake_local import athena, demo, workspace
from auditlake_local.simulators import serve
from auditlake_local.stack import ACCOUNT, REGION, LambdaContext, LocalStack
from auditlake_local.vendors import ACCOUNTS, VENDORS

EVENTS = 400  # per vendor, over DAYS; the demo collects LOOKBACK days and leaves the rest for backfill
DAYS = 10
LOOKBACK = 3


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Run:
    capsys.readouterr()
    code = main.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def one_sentence_error(result: Run) -> str:
    """The failure is one line on stderr, no traceback, exit 1."""
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pristine") / "demo"
    checks = demo.run(directory, events=EVENTS, days=DAYS, lookback_days=LOOKBACK)
    assert all(c.missing == c.duplicates == c.unexpected == 0 and c.older > 0 for c in checks), checks
    return directory


@pytest.fixture
def ws_dir(pristine: Path, tmp_path: Path) -> Path:
    """A copy of the demo workspace, for a test to change."""
    return Path(shutil.copytree(pristine, tmp_path / "demo"))


def archive_lines(directory: Path, vendor: str) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted((directory / "archive" / "events").glob(f"vendor={vendor}/*/*.gz"))
            for line in gzip.decompress(path.read_bytes()).decode().splitlines()]


def canonical(event: Any) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def archive_against_truth(directory: Path, vendor: str, since: datetime,
                          account: str | None = None) -> dict[str, int]:
    """One account's archive (as the workspace puts it back; its records by their `account` column) against its
    simulator's events from `since` on."""
    with workspace.open(directory, vendors=[vendor]) as ws:
        adapter = build_adapter(vendor, json.loads(ws.secret(vendor, account)))
        truth = ws.simulators[vendor if account is None else f"{vendor}@{account}"].ground_truth().values()
        expected = Counter(canonical(e) for e in truth if adapter.event_time(e) >= since)
        older = sum(1 for e in truth if adapter.event_time(e) < since)
        records = [r for r in ws.stack.archived_records(vendor) if r["account"] == (account or "default")]
    archived = Counter(canonical(json.loads(r["raw"])) for r in records)
    ids = Counter(r["event_id"] for r in records)
    return {"expected": sum(expected.values()), "older_than_since": older,
            "missing": sum((expected - archived).values()), "extra": sum((archived - expected).values()),
            "duplicate_ids": sum(n - 1 for n in ids.values() if n > 1)}


def slow_requests(monkeypatch: pytest.MonkeyPatch, seconds_per_request: float) -> None:
    """Each request to a simulator costs this much of the invocation's Lambda time, so a backfill takes several
    invocations, deterministically (the engine stops fetching when its deadline nears)."""
    def context(self: workspace.Workspace, function_id: str) -> LambdaContext:
        def requests_made() -> int:
            return sum(s.counters["requests"] for s in self.simulators.values())

        start, timeout = requests_made(), self.stack.functions[function_id].timeout
        return LambdaContext(function_name=function_id, timeout_seconds=timeout,
                             remaining_ms=lambda: int((timeout - seconds_per_request * (requests_made() - start))
                                                      * 1000))

    monkeypatch.setattr(workspace.Workspace, "context", context)


# -- the demo and its workspace ------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_collects_checks_saves_and_shows_queries_and_status(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    directory = tmp_path / "ws"
    result = run(capsys, "demo", "--events", 150, "--days", 6, "--workspace", directory)
    assert result.code == 0, result.err
    for vendor in VENDORS:
        assert f"{vendor:<8}" in result.out and "missing 0, duplicates 0, unexpected 0" in result.out
    assert "auditlake query --saved" in result.out
    assert "STREAM" in result.out and "asana#1200000000000001" in result.out
    # Make's two organizations, in different zones, each checked against its own simulator and shown apart.
    us = ACCOUNTS["make"]["us-subsidiary"]
    assert us.scope["zone"] != VENDORS["make"].scope["zone"]
    assert re.search(r"^  make@us-subsidiary +\d+ records in +\d+ objects; missing 0, duplicates 0, unexpected 0",
                     result.out, re.MULTILINE), result.out
    assert re.search(rf"^make@us-subsidiary#{us.scope['organization_id']} +us-subsidiary +\S+", result.out,
                     re.MULTILINE), result.out
    assert re.search(rf"^make#{VENDORS['make'].scope['organization_id']} +default ", result.out, re.MULTILINE)
    for vendor in VENDORS:  # each vendor published events a day late; its reconciliation found every one
        line = next(line for line in result.out.splitlines() if line.startswith(f"{vendor:<8} reconciliation:"))
        assert re.search(r": (\d+) events published a day late; .* found and archived \1 the live", line), line
    assert {p.name for p in directory.iterdir()} >= {"workspace.json", "state.json", "secrets.json", "archive",
                                                     "simulators", "signing-key.pem"}
    last = result.out.strip().splitlines()[-2:]
    assert last[0] == "$ auditlake verify"
    # Ten streams (Make's second organization's among them), each with its live chain and its reconciliation's.
    assert last[1].startswith("20 chain(s)") and last[1].endswith("no findings"), last
    assert (directory / "simulators" / "make@us-subsidiary.json.gz").is_file()
    assert set(json.loads((directory / "secrets.json").read_text())) == {*VENDORS, "make@us-subsidiary"}


def test_demo_refuses_a_directory_that_is_not_a_workspace(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    message = one_sentence_error(run(capsys, "demo", "--events", 10, "--workspace", tmp_path))
    assert "is not a demo workspace" in message
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_status_reads_the_saved_workspace(capsys: pytest.CaptureFixture[str], ws_dir: Path) -> None:
    result = run(capsys, "status", "--workspace", ws_dir)
    assert result.code == 0, result.err
    assert "dashboard:" not in result.out  # a local workspace has none
    header, *rows = result.out.split("\n\n")[1].splitlines()  # the streams' table; the reconciliations' follows
    assert header.split()[:4] == ["STREAM", "ACCOUNT", "DONE", "UNTIL"]
    archived: Counter[str] = Counter()
    accounts = []
    for row in rows:
        cells = row.split()
        vendor, _, account = cells[0].split("#")[0].partition("@")
        accounts.append((vendor, cells[1]))
        assert cells[1] == (account or "default") and "ok" in cells
        assert datetime.fromisoformat(cells[2]) > datetime.now(UTC) - timedelta(minutes=10)  # done until
        archived[vendor] += int(cells[-1].replace(",", ""))
    # asana, ashby: one stream each; clickup: six; make: one per organization, the default one first.
    assert len(rows) == 10 and accounts[-2:] == [("make", "default"), ("make", "us-subsidiary")]
    # The reconciliations' table: one per stream, done, with what each found (the demo's late events).
    header, *reconciled = result.out.split("reconciliations")[1].split("\n\n")[0].splitlines()[1:]
    assert header.split()[:2] == ["STREAM", "ACCOUNT"] and header.split()[-2:] == ["FOUND", "OUTCOME"]
    assert len(reconciled) == 10
    for row in reconciled:
        assert "done" in row.split()
        archived[row.split()[0].split("#")[0].split("@")[0]] += int(row.split()[-2])
    # The tables' counts are the state's; the archive the workspace saved holds exactly as many records.
    assert archived == {vendor: len(archive_lines(ws_dir, vendor)) for vendor in VENDORS}


def test_status_shows_one_account_when_asked(capsys: pytest.CaptureFixture[str], ws_dir: Path) -> None:
    us = ACCOUNTS["make"]["us-subsidiary"]
    result = run(capsys, "status", "--account", "us-subsidiary", "--workspace", ws_dir)
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].endswith(", account us-subsidiary:")
    keys = [line.split()[0] for line in result.out.splitlines()[3:] if "#" in line.split(" ")[0]]
    # Its live stream, then (in the reconciliations' table) the same stream's reconciliation.
    assert keys == [f"make@us-subsidiary#{us.scope['organization_id']}"] * 2, result.out

    default = run(capsys, "status", "--account", "default", "--workspace", ws_dir)
    assert default.code == 0 and "us-subsidiary" not in default.out
    assert f"make#{VENDORS['make'].scope['organization_id']} " in default.out and "asana#" in default.out

    message = one_sentence_error(run(capsys, "status", "--account", "emea", "--workspace", ws_dir))
    assert message.endswith("no stream of account emea has been collected yet; the streams' accounts are default, "
                            "us-subsidiary")
    with pytest.raises(SystemExit) as exit_:
        main.main(["status", "--account", "US_Sub", "--workspace", str(ws_dir)])
    assert exit_.value.code == 2 and "1 to 31 lower-case letters, digits and '-'" in capsys.readouterr().err


def test_the_workspace_puts_back_both_make_organizations(ws_dir: Path) -> None:
    """Each organization's simulator comes back with the events it was given, on its own port, and each secret
    (its own token and scope) points at its own simulator: a tick collects both, each with its own token."""
    saved = {key: json.loads(gzip.decompress((ws_dir / "simulators" / f"{key}.json.gz").read_bytes()))
             for key in ("make", "make@us-subsidiary")}
    with workspace.open(ws_dir, vendors=["make"]) as ws:
        assert set(ws.simulators) == {"make", "make@us-subsidiary"}
        assert ws.origins["make"] != ws.origins["make@us-subsidiary"]
        for key, local in (("make", VENDORS["make"]), ("make@us-subsidiary", ACCOUNTS["make"]["us-subsidiary"])):
            truth = ws.simulators[key].ground_truth()
            assert sorted(truth) == sorted(e["uuid"] for e in saved[key])
            secret = json.loads(ws.secret("make", local.account))
            assert secret == {"token": local.token, **local.scope, "base_url": f"{ws.origins[key]}/api/v2"}
        assert {e["organizationId"] for e in saved["make@us-subsidiary"]} == \
            {int(ACCOUNTS["make"]["us-subsidiary"].scope["organization_id"])}
        before = {key: sim.counters["requests"] for key, sim in ws.simulators.items()}
        summary = ws.invoke("make")
        assert summary["status"] == "ok", summary
        assert {stream["account"] for stream in summary["streams"]} == {"default", "us-subsidiary"}
        # Each simulator accepts only its own token (a 401 otherwise): both answered this tick.
        assert all(sim.counters["requests"] > before[key] for key, sim in ws.simulators.items())


def test_backfill_of_one_account_leaves_the_other_alone(capsys: pytest.CaptureFixture[str], ws_dir: Path) -> None:
    since = (datetime.now(UTC) - timedelta(days=DAYS + 2)).date()
    since_instant = datetime(since.year, since.month, since.day, tzinfo=UTC)
    before = archive_against_truth(ws_dir, "make", since_instant)
    result = run(capsys, "backfill", "make", "--since", since.isoformat(), "--account", "us-subsidiary",
                 "--workspace", ws_dir)
    assert result.code == 0, result.err
    assert f"backfilling make@us-subsidiary from {since.isoformat()}" in result.out
    assert "backfill complete" in result.out
    us = archive_against_truth(ws_dir, "make", since_instant, "us-subsidiary")
    assert us["older_than_since"] == 0 and us["expected"] == EVENTS + demo.late_events(EVENTS)
    assert us == {**us, "missing": 0, "extra": 0, "duplicate_ids": 0}
    assert archive_against_truth(ws_dir, "make", since_instant) == before  # the default organization: untouched
    assert before["missing"] > 0

    message = one_sentence_error(run(capsys, "backfill", "make", "--since", since.isoformat(), "--account", "emea",
                                     "--workspace", ws_dir))
    assert "make has no account emea on the demo workspace" in message and "default, us-subsidiary" in message


def test_commands_without_a_workspace_say_so_in_one_sentence(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    for argv in (["status"], ["backfill", "asana", "--since", "2026-01-01"], ["query", "SELECT 1"],
                 ["secret", "set", "asana", "--token-stdin"]):
        message = one_sentence_error(run(capsys, *argv, "--workspace", tmp_path / "none"))
        assert message == f"auditlake: error: no demo workspace at {tmp_path / 'none'}; run `auditlake demo` first"


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["demo"], ["status"], ["backfill"], ["reconcile"], ["query"], ["secret"], ["secret", "set"],
                 ["doctor"]):
        with pytest.raises(SystemExit) as exit_:
            main.main([*argv, "--help"])
        assert exit_.value.code == 0
        assert "usage: auditlake" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv in (["backfill", "notavendor", "--since", "2026-01-01"], ["backfill", "asana"], ["query"],
                 ["query", "SELECT 1", "--saved", "x"], ["secret", "set", "asana", "--bogus"]):
        with pytest.raises(SystemExit) as exit_:
            main.main([*argv, "--workspace", str(tmp_path)])
        assert exit_.value.code == 2, argv
        assert "usage:" in capsys.readouterr().err


# -- backfill ------------------------------------------------------------------------------------------------


def test_backfill_is_exactly_once_and_resumes_after_a_stop_and_an_interrupt(
        capsys: pytest.CaptureFixture[str], ws_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    since = (datetime.now(UTC) - timedelta(days=7)).date()
    since_instant = datetime(since.year, since.month, since.day, tzinfo=UTC)
    slow_requests(monkeypatch, seconds_per_request=230)  # one page per invocation
    args = ("backfill", "asana", "--since", since.isoformat(), "--workspace", ws_dir)

    stopped = run(capsys, *args, "--max-invocations", 1)
    assert stopped.code == 0, stopped.err
    assert "stopped after 1 invocation(s)" in stopped.out and "run the same command again" in stopped.out
    partial = run(capsys, "status", "--workspace", ws_dir).out
    backfill_row = next(line for line in partial.split("backfills:")[1].splitlines() if line.startswith("asana#"))
    progress = next(cell for cell in backfill_row.split() if cell.endswith("%"))
    # Progress moves as windows complete; the first invocation left its window open.
    assert int(progress[:-1]) < 100 and " backlog " in backfill_row

    # Ctrl-C right after the next invocation, before the workspace is saved: that invocation's work is lost with
    # the process (archive and state alike), and must be done again, once.
    real_invoke = workspace.Workspace.invoke

    def interrupted(self: workspace.Workspace, vendor: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
        real_invoke(self, vendor, event)
        raise KeyboardInterrupt

    monkeypatch.setattr(workspace.Workspace, "invoke", interrupted)
    interrupt = run(capsys, *args)
    assert interrupt.code == errors.EXIT_INTERRUPTED and "interrupted" in interrupt.err
    monkeypatch.setattr(workspace.Workspace, "invoke", real_invoke)

    finished = run(capsys, *args)
    assert finished.code == 0, finished.err
    assert "backfill complete" in finished.out
    lines = [line for line in finished.out.splitlines() if line.startswith("[")]
    assert len(lines) >= 2 and lines[-1].startswith(f"[{'#' * output.Progress.WIDTH}] 100.0%")  # one line per update

    check = archive_against_truth(ws_dir, "asana", since_instant)
    assert check["older_than_since"] > 0 and check["expected"] > 0
    assert check == {**check, "missing": 0, "extra": 0, "duplicate_ids": 0}

    again = run(capsys, *args)  # a finished backfill asked again: nothing more is archived
    assert again.code == 0 and "backfill complete: 0 events" in again.out
    assert archive_against_truth(ws_dir, "asana", since_instant) == check


def test_backfill_of_every_stream_reaches_the_whole_history(capsys: pytest.CaptureFixture[str],
                                                            ws_dir: Path) -> None:
    since = (datetime.now(UTC) - timedelta(days=DAYS + 2)).date()
    result = run(capsys, "backfill", "clickup", "--since", since.isoformat(), "--workspace", ws_dir)
    assert result.code == 0, result.err
    check = archive_against_truth(ws_dir, "clickup", datetime(since.year, since.month, since.day, tzinfo=UTC))
    assert check["older_than_since"] == 0 and check["expected"] == EVENTS + demo.late_events(EVENTS)
    assert check == {**check, "missing": 0, "extra": 0, "duplicate_ids": 0}
    status = run(capsys, "status", "--workspace", ws_dir).out.split("backfills:")[1]
    assert sum(line.startswith("clickup#") and " 100% " in line for line in status.splitlines()) == 6


def test_reconcile_by_hand_with_progress_then_status_shows_it(capsys: pytest.CaptureFixture[str],
                                                              ws_dir: Path) -> None:
    """The demo collected everything the simulators hold, so a reconciliation re-reads it and finds nothing
    missing; it says so, and `status` shows each stream's reconciliation as done with 0 found."""
    since = (datetime.now(UTC) - timedelta(days=2)).date()
    since_instant = datetime(since.year, since.month, since.day, tzinfo=UTC)
    before = archive_against_truth(ws_dir, "clickup", since_instant)
    result = run(capsys, "reconcile", "clickup", "--since", since.isoformat(), "--workspace", ws_dir)
    assert result.code == 0, result.err
    assert "%" in result.out and "reconciliation complete: the archive holds every event clickup still holds" \
        in result.out
    # Nothing added: every event since the date was there (`extra` counts the archived events before it).
    assert archive_against_truth(ws_dir, "clickup", since_instant) == before
    assert (before["missing"], before["duplicate_ids"]) == (0, 0)
    status = run(capsys, "status", "--workspace", ws_dir).out
    rows = [line.split() for line in status.split("reconciliations")[1].splitlines() if line.startswith("clickup#")]
    assert len(rows) == 6 and all("done" in row and row[-2] == "0" and row[-1] == "ok" for row in rows), rows
    assert "not in the past" in one_sentence_error(run(capsys, "reconcile", "make", "--since", "2999-01-01",
                                                       "--workspace", ws_dir))


def test_backfill_rejects_bad_dates_in_one_sentence(capsys: pytest.CaptureFixture[str], ws_dir: Path) -> None:
    assert "YYYY-MM-DD" in one_sentence_error(run(capsys, "backfill", "make", "--since", "last week",
                                                  "--workspace", ws_dir))
    assert "not in the past" in one_sentence_error(run(capsys, "backfill", "make", "--since", "2999-01-01",
                                                       "--workspace", ws_dir))


def test_backfill_loop_waits_for_busy_streams_and_finishes_an_earlier_span_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop alone, fed summaries: a busy stream is waited for; when the collector first finishes an
    unfinished earlier backfill (a later `since`), one more round reaches back to the date asked for."""
    waits: list[float] = []
    monkeypatch.setattr(target, "sleep", waits.append)

    def summary(status: str, since: str | None, done: str | None, stream_status: str = "ok") -> dict[str, Any]:
        span = {"since": since, "until": "2026-11-10T00:00:00.000Z", "done_until": done} if since else None
        return {"vendor": "asana", "status": status, "streams": [
            {"stream": "asana#1#backfill", "status": stream_status, "events_archived": 5, "backfill": span}]}

    answers = iter([
        summary("ok", None, None, stream_status="busy"),  # a scheduled run holds the lease
        summary("backlog", "2026-11-05T00:00:00.000Z", "2026-11-07T00:00:00.000Z"),
        summary("ok", "2026-11-05T00:00:00.000Z", "2026-11-10T00:00:00.000Z"),  # the earlier span, finished
        summary("ok", "2026-11-01T00:00:00.000Z", "2026-11-10T00:00:00.000Z"),
    ])
    events: list[dict[str, Any]] = []
    out = io.StringIO()

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return next(answers)

    report = backfill.run_backfill(invoke, "asana", datetime(2026, 11, 1).date(), output.Progress(out))
    assert report.complete and report.invocations == 4 and report.events == 20
    assert waits == [target.BUSY_WAIT_SECONDS]
    assert events == [{"backfill": {"since": "2026-11-01"}}] * 4
    assert [line.split("]")[1].split("%")[0].strip() for line in out.getvalue().splitlines()] == \
        ["100.0", "40.0", "100.0", "100.0"]


# -- query ---------------------------------------------------------------------------------------------------


def test_query_saved_and_ad_hoc_on_the_demo(capsys: pytest.CaptureFixture[str], ws_dir: Path) -> None:
    listed = run(capsys, "query", "--list", "--workspace", ws_dir)
    assert listed.code == 0 and listed.out.startswith("SAVED QUERY")
    assert set(athena.saved_queries()) <= {line.split()[0] for line in listed.out.splitlines()}
    today = datetime.now(UTC).date()
    days = [f"--param=first_day={today - timedelta(days=DAYS)}", f"--param=last_day={today}"]
    saved = run(capsys, "query", "--saved", "events-per-vendor-per-day", *days, "--workspace", ws_dir)
    assert saved.code == 0, saved.err
    per_vendor: Counter[str] = Counter()
    for line in saved.out.splitlines()[1:-1]:
        vendor, _account, _day, count = line.split()
        per_vendor[vendor] += int(count.replace(",", ""))
    assert per_vendor == {vendor: len(archive_lines(ws_dir, vendor)) for vendor in VENDORS}
    needs = one_sentence_error(run(capsys, "query", "--saved", "events-per-vendor-per-day", "--workspace", ws_dir))
    assert "needs --param first_day=… --param last_day=…" in needs

    adhoc = run(capsys, "query", "SELECT vendor, count(*) AS n FROM events GROUP BY vendor ORDER BY vendor",
                "--workspace", ws_dir)
    assert adhoc.code == 0, adhoc.err
    lines = adhoc.out.splitlines()
    header, rows, footer = lines[0], lines[1:-1], lines[-1]
    assert header.split() == ["VENDOR", "N"] and footer == "(4 rows)"
    assert {r.split()[0]: int(r.split()[1].replace(",", "")) for r in rows} == \
        {vendor: len(archive_lines(ws_dir, vendor)) for vendor in VENDORS}

    assert "no saved query named nope" in one_sentence_error(run(capsys, "query", "--saved", "nope",
                                                                 "--workspace", ws_dir))


# -- secret set ----------------------------------------------------------------------------------------------


def test_secret_set_checks_the_token_with_the_vendor_and_never_shows_it(
        capsys: pytest.CaptureFixture[str], ws_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asana = VENDORS["asana"]
    secrets_file = ws_dir / "secrets.json"
    stale = json.loads(secrets_file.read_text())
    stale["asana"] = json.dumps({"token": "expired-token-0000", **asana.scope})
    secrets_file.write_text(json.dumps(stale))

    wrong = "wrong-token-5b7e1c"
    monkeypatch.setattr("sys.stdin", io.StringIO(wrong + "\n"))
    refused = run(capsys, "secret", "set", "asana", "--token-stdin", "--field",
                  f"workspace_gid={asana.scope['workspace_gid']}", "--workspace", ws_dir)
    message = one_sentence_error(refused)
    assert "Asana did not accept these values" in message and "401" in message and "nothing was stored" in message
    assert wrong not in refused.out + refused.err
    assert json.loads(json.loads(secrets_file.read_text())["asana"])["token"] == "expired-token-0000"

    # Interactive: the token through getpass (never echoed), the scope at a prompt offering the current value.
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or asana.token)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))  # Enter: keep the workspace gid offered
    stored = run(capsys, "secret", "set", "asana", "--workspace", ws_dir)
    assert stored.code == 0, stored.err
    assert asana.token not in stored.out + stored.err + "".join(prompts)
    assert f"workspace_gid [{asana.scope['workspace_gid']}]" in stored.out
    assert "Asana accepted the token" in stored.out
    saved = json.loads(json.loads(secrets_file.read_text())["asana"])
    assert saved["token"] == asana.token and saved["workspace_gid"] == asana.scope["workspace_gid"]

    # The collector works with it in a later process (the workspace points it at that run's simulator).
    with workspace.open(ws_dir, vendors=["asana"]) as ws:
        assert ws.invoke("asana")["status"] == "ok"


def test_secret_set_for_a_named_account_of_the_demo(capsys: pytest.CaptureFixture[str], ws_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The subsidiary's token, checked against its own simulator (the default organization's token is refused
    there), stored in its own secret and saved with the workspace; an account the demo does not simulate is
    refused before any request, since its token would go to the real vendor."""
    us = ACCOUNTS["make"]["us-subsidiary"]
    fields = [f"--field=organization_id={us.scope['organization_id']}", f"--field=zone={us.scope['zone']}"]
    secrets_file = ws_dir / "secrets.json"
    before = json.loads(secrets_file.read_text())
    monkeypatch.setattr("sys.stdin", io.StringIO(VENDORS["make"].token + "\n"))
    refused = run(capsys, "secret", "set", "make", "--account", "us-subsidiary", "--token-stdin", *fields,
                  "--workspace", ws_dir)
    assert "Make did not accept these values for account us-subsidiary" in one_sentence_error(refused)
    assert json.loads(secrets_file.read_text()) == before

    monkeypatch.setattr("sys.stdin", io.StringIO(us.token + "\n"))
    stored = run(capsys, "secret", "set", "make", "--account", "us-subsidiary", "--token-stdin", *fields,
                 "--workspace", ws_dir)
    assert stored.code == 0, stored.err
    assert "stored in the demo's make secret of account us-subsidiary" in stored.out
    assert "does not read account" not in stored.out and us.token not in stored.out + stored.err
    saved = json.loads(secrets_file.read_text())

    def without_origin(text: str) -> dict[str, str]:  # each run serves the simulators on new ports
        return {k: v for k, v in json.loads(text).items() if k != "base_url"}

    assert without_origin(saved["make@us-subsidiary"]) == {"token": us.token, **us.scope}
    assert without_origin(saved["make"]) == without_origin(before["make"])

    message = one_sentence_error(run(capsys, "secret", "set", "make", "--account", "emea", "--token-stdin",
                                     "--workspace", ws_dir))
    assert message.endswith("the demo simulates no make account emea; its make accounts: default, us-subsidiary")


def test_secret_set_refuses_a_token_on_the_command_line(capsys: pytest.CaptureFixture[str], ws_dir: Path) -> None:
    result = run(capsys, "secret", "set", "asana", "--field", "token=abc", "--workspace", ws_dir)
    assert "never passed as --field" in one_sentence_error(result)
    assert "abc" not in result.out + result.err.replace("token=abc", "")


# -- verify ----------------------------------------------------------------------------------------------------


def test_verify_the_saved_demo_then_a_changed_object_is_named(capsys: pytest.CaptureFixture[str],
                                                              ws_dir: Path) -> None:
    clean = run(capsys, "verify", "--workspace", ws_dir)
    assert clean.code == 0, clean.out + clean.err
    assert clean.out.startswith(f"verifying the demo workspace at {ws_dir}: every stream")
    assert clean.out.strip().splitlines()[-1].endswith("no findings")

    # A later run extends the chains with the same (saved) key; the workspace puts the digests' versions back.
    assert run(capsys, "backfill", "make", "--since", (datetime.now(UTC) - timedelta(days=DAYS)).date().isoformat(),
               "--workspace", ws_dir).code == 0
    assert run(capsys, "verify", "--stream", "make", "--workspace", ws_dir).code == 0

    objects = sorted((ws_dir / "archive" / "events" / "vendor=ashby").rglob("*.json.gz"))
    changed = objects[0]
    changed.write_bytes(gzip.compress(gzip.decompress(changed.read_bytes()).replace(b'"success"', b'"failure"', 1)))
    found = run(capsys, "verify", "--stream", "ashby", "--workspace", ws_dir)
    assert found.code == 1
    lines = found.out.strip().splitlines()
    key = changed.relative_to(ws_dir / "archive").as_posix()
    assert lines[1].startswith(f"modified object: {key} (version ") and "its bytes changed" in lines[1], lines
    assert lines[-1].endswith("1 finding(s): 1 modified object")


def test_verify_does_not_flag_the_age_of_a_removed_accounts_chain(ws_dir: Path) -> None:
    """Three hours on, every live chain's last digest is stale, unless its account is no longer collected (removed
    from `<Title>Accounts`): that chain ended when its collection stopped."""
    class Removed:
        """A stack whose MakeAccounts no longer lists us-subsidiary, and which predates Asana's parameter."""

        def accounts(self, vendor: str) -> tuple[str, ...] | None:
            return None if vendor == "asana" else ()

    collected = verify_command.collected_accounts(Removed())  # type: ignore[arg-type]
    assert collected(StreamKey("make", "4187")) and not collected(StreamKey("make", "5302", account="us-subsidiary"))
    assert collected(StreamKey("asana", "1", account="domain-b"))  # no parameter: nothing to say it was removed

    later = datetime.now(UTC) + timedelta(hours=3)
    with workspace.open(ws_dir, vendors=[]) as ws:
        kms, s3 = boto3.client("kms"), boto3.client("s3")
        public = load_public_key(kms.get_public_key(KeyId=ws.stack.functions_env("DIGEST_SIGNING_KEY_ARN"))[
            "PublicKey"], "the demo's key")
        states = StateStore(boto3.client("dynamodb"), ws.stack.table).scan

        def stale(**removed: Any) -> list[str]:
            report = Verifier(s3, ws.stack.bucket, public, states=states, now=lambda: later, **removed).run()
            assert {f.kind for f in report.findings} == {GAP}
            return sorted(f.subject.split("/")[2] for f in report.findings)

        every = stale()
        assert len(every) == 10 and "stream=make-us-subsidiary-5302" in every
        assert stale(collected=collected) == [s for s in every if s != "stream=make-us-subsidiary-5302"]


def test_verify_offline_with_the_public_key_file(capsys: pytest.CaptureFixture[str], ws_dir: Path,
                                                 tmp_path: Path) -> None:
    private = serialization.load_pem_private_key((ws_dir / "signing-key.pem").read_bytes(), password=None)
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "digest-key.der").write_bytes(der)  # what `aws kms get-public-key` gives, base64-decoded
    result = run(capsys, "verify", "--public-key", tmp_path / "digest-key.der", "--stream", "asana",
                 "--workspace", ws_dir)
    assert result.code == 0 and result.out.strip().endswith("no findings"), result.out

    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "other.pem").write_bytes(stranger.public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    wrong = run(capsys, "verify", "--public-key", tmp_path / "other.pem", "--stream", "asana", "--workspace", ws_dir)
    assert wrong.code == 1 and all(line.startswith("bad signature: digests/vendor=asana/")
                                   for line in wrong.out.strip().splitlines()[1:-1])

    (tmp_path / "notes.txt").write_text("not a key")
    message = one_sentence_error(run(capsys, "verify", "--public-key", tmp_path / "notes.txt", "--workspace", ws_dir))
    assert message.startswith(f"auditlake: error: {tmp_path / 'notes.txt'} is not a public key in PEM or DER")


def test_verify_refuses_bad_options_in_one_sentence(capsys: pytest.CaptureFixture[str], ws_dir: Path) -> None:
    message = one_sentence_error(run(capsys, "verify", "--stream", "jira", "--workspace", ws_dir))
    assert "--stream takes a vendor (asana, ashby, clickup, make) or a stream key" in message
    message = one_sentence_error(run(capsys, "verify", "--since", "yesterday", "--workspace", ws_dir))
    assert "--since takes a day (YYYY-MM-DD) or an ISO 8601 time, not 'yesterday'" in message
    message = one_sentence_error(run(capsys, "verify", "--since", "2026-11-02", "--until", "2026-11-01",
                                     "--workspace", ws_dir))
    assert "is not before --until" in message


# -- a deployed stack (moto) ---------------------------------------------------------------------------------


@pytest.fixture
def deployed(stack: LocalStack) -> Iterator[tuple[LocalStack, str]]:
    boto3.client("athena").create_work_group(Name="auditlake-analysts")
    stack.refs["AWS::StackId"] = deploy(stack, "auditlake-prod")
    yield stack, "auditlake-prod"


@pytest.mark.slow
def test_an_auditor_with_the_auditor_policy_can_verify_a_deployed_stack(
        capsys: pytest.CaptureFixture[str], deployed: tuple[LocalStack, str], monkeypatch: pytest.MonkeyPatch,
        clock: Any, pauses: Any) -> None:
    """Every AWS call `verify --stack` makes is one the stack's AuditorPolicy allows, on the resource it names
    (no collector credentials needed); and the verification is clean."""
    stack, name = deployed
    with world_of("clickup", stack, clock.now) as world:
        world.seed(300, clock.now() - timedelta(days=2), clock.now() - timedelta(minutes=5), seed=5)
        stack.invoke(world.function_id, environment=workspace.QUIET)
    start = len(aws_calls.CALLS)
    result = run(capsys, "verify", "--stack", name, "--region", REGION)
    assert result.code == 0 and result.out.strip().endswith("no findings"), result.out
    assert "6 chain(s)" in result.out

    # The permission model (tests/iam_model.py) authorises each call as AWS would, with the AuditorPolicy, the
    # bucket policy and the keys' policies (KMS through S3 and DynamoDB included).
    calls = aws_calls.CALLS[start:]
    assert calls and {call.principal for call in calls} == {iam_model.AUDITOR}
    checked = aws_calls.check(calls)
    assert aws_calls.problems(checked) == []
    assert {action for _, action, _, _ in aws_calls.table(checked)} >= {
        "cloudformation:DescribeStacks", "s3:ListBucketVersions", "s3:GetObjectVersion", "kms:GetPublicKey",
        "dynamodb:Scan", "kms:Decrypt via s3", "kms:Decrypt via dynamodb"}


def test_status_of_a_deployed_stack(capsys: pytest.CaptureFixture[str], deployed: tuple[LocalStack, str]) -> None:
    stack, name = deployed
    now = lambda: datetime.now(UTC)  # noqa: E731
    with world_of("make", stack, now) as world:
        world.seed(250, now() - timedelta(days=2), now() - timedelta(minutes=5), seed=3)
        stack.invoke(world.function_id, environment=workspace.QUIET)
    result = run(capsys, "status", "--stack", name, "--region", REGION)
    assert result.code == 0, result.err
    assert result.out.startswith(f"stack {name}, at ")
    row = next(line for line in result.out.splitlines() if line.startswith("make#"))
    assert " ok " in row and row.split()[-1] == "250"
    # The stack's dashboard, from its DashboardUrl output.
    assert result.out.splitlines()[-1] == (f"dashboard: https://{REGION}.console.aws.amazon.com/cloudwatch/home"
                                           f"?region={REGION}#dashboards/dashboard/{name}-{REGION}")

    missing = one_sentence_error(run(capsys, "status", "--stack", "nope", "--region", REGION))
    assert missing == f"auditlake: error: there is no CloudFormation stack named nope in {REGION}"


def test_backfill_of_a_deployed_stack_drives_the_collector_until_done(
        capsys: pytest.CaptureFixture[str], deployed: tuple[LocalStack, str], monkeypatch: pytest.MonkeyPatch,
        clock: Any) -> None:
    """moto's Lambda cannot run the function's code: the invocation is replaced by the real handler run
    in-process (as `LocalStack.invoke` does), with a deadline that lets each run fetch a few pages."""
    stack, name = deployed
    with world_of("ashby", stack, clock.now) as world:
        world.seed(900, clock.now() - timedelta(days=9), clock.now() - timedelta(minutes=5), seed=5)
        stack.invoke(world.function_id, environment={**workspace.QUIET, "INITIAL_LOOKBACK_DAYS": "2"})
        served = world.simulator.counters

        def invoke(self: target.StackTarget, vendor: str, event: dict[str, Any]) -> dict[str, Any]:
            assert self.output("AshbyCollectorFunctionName") == stack.refs["AshbyCollector"]
            start = served["requests"]
            context = LambdaContext(function_name=vendor, timeout_seconds=280,
                                    remaining_ms=lambda: int((280 - 100 * (served["requests"] - start)) * 1000))
            return stack.invoke("AshbyCollector", event, context=context, environment=workspace.QUIET)

        monkeypatch.setattr(target.StackTarget, "invoke", invoke)
        since = (clock.now() - timedelta(days=30)).date()
        result = run(capsys, "backfill", "ashby", "--since", since.isoformat(), "--stack", name, "--region", REGION)
        assert result.code == 0, result.err
        assert "backfill complete" in result.out
        assert sum(line.startswith("[") for line in result.out.splitlines()) >= 2
        archived = Counter(canonical(json.loads(r["raw"])) for r in stack.archived_records("ashby"))
        assert archived == Counter(canonical(e) for e in world.simulator.ground_truth().values())


def test_lambda_invocation_waits_while_a_scheduled_run_holds_the_function(
        deployed: tuple[LocalStack, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lambda API itself (moto cannot run the code): botocore's Stubber answers throttled, then a summary."""
    _, name = deployed
    waits: list[float] = []
    monkeypatch.setattr(target, "sleep", waits.append)
    where = target.StackTarget(name, REGION)
    summary = {"vendor": "make", "status": "ok", "streams": []}

    def payload(value: Any) -> StreamingBody:
        data = json.dumps(value).encode()
        return StreamingBody(io.BytesIO(data), len(data))

    function = where.output("MakeCollectorFunctionName")
    expected = {"FunctionName": function, "InvocationType": "RequestResponse",
                "Payload": json.dumps({"backfill": {"since": "2026-01-01"}}).encode()}
    with Stubber(where.lambda_client) as stub:
        stub.add_client_error("invoke", "TooManyRequestsException", "Rate Exceeded.", 429, expected_params=expected)
        stub.add_response("invoke", {"StatusCode": 200, "Payload": payload(summary)}, expected)
        stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                                     "Payload": payload({"errorMessage": "make: 1 stream(s) failed"})}, expected)
        assert where.invoke("make", {"backfill": {"since": "2026-01-01"}}) == summary
        with pytest.raises(errors.CliError, match="the make collector failed: make: 1 stream"):
            where.invoke("make", {"backfill": {"since": "2026-01-01"}})
    assert waits == [target.BUSY_WAIT_SECONDS]


def test_secret_set_on_a_deployed_stack(capsys: pytest.CaptureFixture[str], deployed: tuple[LocalStack, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stack, name = deployed
    local = VENDORS["make"]
    secret_id = stack.functions[local.function_id].environment["SECRET_ID"]
    before = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    with serve(local.start()) as origin:
        fields = [f"--field=organization_id={local.scope['organization_id']}", f"--field=zone={local.scope['zone']}",
                  f"--field=base_url={origin}{local.api_path}"]
        monkeypatch.setattr("sys.stdin", io.StringIO("not-the-token\n"))
        refused = run(capsys, "secret", "set", "make", "--token-stdin", *fields, "--stack", name, "--region", REGION)
        assert "Make did not accept these values" in one_sentence_error(refused)
        assert "not-the-token" not in refused.out + refused.err
        assert boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"] == before

        monkeypatch.setattr("sys.stdin", io.StringIO(local.token + "\n"))
        stored = run(capsys, "secret", "set", "make", "--token-stdin", *fields, "--stack", name, "--region", REGION)
        assert stored.code == 0, stored.err
        assert local.token not in stored.out + stored.err and secret_id in stored.out
    value = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
    assert value == {"token": local.token, **local.scope, "base_url": f"{origin}{local.api_path}"}


def test_backfill_and_reconcile_of_one_account_on_a_deployed_stack(
        capsys: pytest.CaptureFixture[str], stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The invocation carries the account; a name the stack's `MakeAccounts` does not list is refused before any
    invocation, naming the accounts it does list."""
    stack.refs["AWS::StackId"] = deploy(stack, "auditlake-prod", {"MakeAccounts": "us-sub,emea"})
    events: list[dict[str, Any]] = []

    def invoke(self: target.StackTarget, vendor: str, event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        kind = "backfill" if "backfill" in event else "reconciliation"
        span = {"since": "2026-11-01T00:00:00.000Z", "until": "2026-11-02T00:00:00.000Z",
                "done_until": "2026-11-02T00:00:00.000Z"}
        return {"vendor": vendor, "status": "ok", "streams": [
            {"stream": "make@us-sub#4190#" + ("backfill" if kind == "backfill" else "reconcile"), "account": "us-sub",
             "status": "ok", "events_archived": 3, kind: span}]}

    monkeypatch.setattr(target.StackTarget, "invoke", invoke)
    since = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    where = ("--stack", "auditlake-prod", "--region", REGION)
    backfilled = run(capsys, "backfill", "make", "--since", since, "--account", "us-sub", *where)
    assert backfilled.code == 0 and "backfilling make@us-sub from" in backfilled.out, backfilled.err
    reconciled = run(capsys, "reconcile", "make", "--since", since, "--account", "us-sub", *where)
    assert reconciled.code == 0 and "reconciling make@us-sub from" in reconciled.out, reconciled.err
    everything = run(capsys, "backfill", "make", "--since", since, *where)
    first = run(capsys, "reconcile", "make", "--since", since, "--account", "default", *where)
    assert everything.code == first.code == 0
    assert events == [{"backfill": {"since": since, "account": "us-sub"}},
                      {"reconcile": {"since": since, "account": "us-sub"}},
                      {"backfill": {"since": since}},  # every account
                      {"reconcile": {"since": since, "account": "default"}}]

    message = one_sentence_error(run(capsys, "backfill", "make", "--since", since, "--account", "us-subsidiary",
                                     *where))
    assert message == ("auditlake: error: make has no account us-subsidiary on stack auditlake-prod (its accounts: "
                       "default, us-sub, emea); to add one, `auditlake secret set make --account us-subsidiary`, "
                       "then deploy with MakeAccounts naming it")
    assert len(events) == 4


def test_secret_set_creates_a_named_accounts_secret_with_the_archive_key(
        capsys: pytest.CaptureFixture[str], deployed: tuple[LocalStack, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`secret set make --account us-subsidiary` on a stack that does not collect it yet: the token is checked with
    the vendor first, then the account's secret is created under the stack's prefix, encrypted with the archive key,
    and the command says how to have the collector read it. A second run puts a new value in the same secret. The
    token is never shown; the default account's secret is untouched."""
    stack, name = deployed
    local = ACCOUNTS["make"]["us-subsidiary"]
    secrets = boto3.client("secretsmanager")
    environment = stack.functions[local.function_id].environment
    secret_name = environment["ACCOUNT_SECRET_PREFIX"] + "us-subsidiary"
    default_before = secrets.get_secret_value(SecretId=environment["SECRET_ID"])["SecretString"]
    where = ("--account", "us-subsidiary", "--stack", name, "--region", REGION)
    with serve(local.start()) as origin:
        fields = [f"--field=organization_id={local.scope['organization_id']}", f"--field=zone={local.scope['zone']}",
                  f"--field=base_url={origin}{local.api_path}"]
        # The default organization's token is another organization's: the subsidiary's simulator refuses it.
        monkeypatch.setattr("sys.stdin", io.StringIO(VENDORS["make"].token + "\n"))
        refused = run(capsys, "secret", "set", "make", "--token-stdin", *fields, *where)
        message = one_sentence_error(refused)
        assert "Make did not accept these values for account us-subsidiary" in message and "nothing was stored" \
            in message
        assert VENDORS["make"].token not in refused.out + refused.err
        with pytest.raises(secrets.exceptions.ResourceNotFoundException):
            secrets.describe_secret(SecretId=secret_name)

        monkeypatch.setattr("sys.stdin", io.StringIO(local.token + "\n"))
        stored = run(capsys, "secret", "set", "make", "--token-stdin", *fields, *where)
        assert stored.code == 0, stored.err
        assert local.token not in stored.out + stored.err
        described = secrets.describe_secret(SecretId=secret_name)
        assert described["ARN"] in stored.out
        assert described["KmsKeyId"] == stack.functions_env("ARCHIVE_KMS_KEY_ARN")
        assert "`sam deploy --parameter-overrides MakeAccounts=us-subsidiary` adds it" in stored.out

        # Again (a rotated token): a new value in the same secret, not a second secret.
        monkeypatch.setattr("sys.stdin", io.StringIO(local.token + "\n"))
        again = run(capsys, "secret", "set", "make", "--token-stdin", *fields, *where)
        assert again.code == 0 and described["ARN"] in again.out, again.err
    value = json.loads(secrets.get_secret_value(SecretId=secret_name)["SecretString"])
    assert value == {"token": local.token, **local.scope, "base_url": f"{origin}{local.api_path}"}
    assert len(secrets.list_secret_version_ids(SecretId=secret_name)["Versions"]) == 2
    assert secrets.get_secret_value(SecretId=environment["SECRET_ID"])["SecretString"] == default_before


def test_query_on_a_deployed_stack_runs_athena_and_prints_every_page(
        capsys: pytest.CaptureFixture[str], deployed: tuple[LocalStack, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's Athena runs no SQL: the result rows are queued through moto's API; what is checked is the request
    (workgroup, database, execution parameters) and how the answer is read and printed."""
    _, name = deployed
    monkeypatch.setattr(target, "sleep", lambda seconds: None)
    rows = [["vendor", "events"], ["asana", "1200"], ["make", "34"]]
    requests.post("http://motoapi.amazonaws.com/moto-api/static/athena/query-results", json={
        "account_id": ACCOUNT, "region": REGION, "results": [{
            "rows": [{"Data": [{"VarCharValue": v} for v in row]} for row in rows],
            "column_info": [{"Name": "vendor", "Type": "varchar", "CatalogName": "", "SchemaName": "", "TableName": "",
                             "Label": "vendor"},
                            {"Name": "events", "Type": "bigint", "CatalogName": "", "SchemaName": "",
                             "TableName": "", "Label": "events"}]}]}, timeout=5)
    sql = "SELECT vendor, count(*) AS events FROM events GROUP BY 1"
    result = run(capsys, "query", sql, "--stack", name, "--region", REGION)
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["VENDOR  EVENTS", "asana    1,200", "make        34", "(2 rows)"]

    (execution,) = athena_backends[ACCOUNT][REGION].executions.values()
    assert execution.query == sql and execution.workgroup.name == "auditlake-analysts"
    assert execution.context == {"Database": "auditlake"}

    # A saved query runs as deployed in the workgroup, its parameters passed as Athena's execution parameters.
    saved = athena.saved_query("failed-logins")
    boto3.client("athena").create_named_query(Name=saved.name, Description=saved.description, Database="auditlake",
                                              QueryString=saved.sql, WorkGroup="auditlake-analysts")
    # What the stack deployed is what `--list` shows and `--saved` runs (an installed command has no template).
    listed = run(capsys, "query", "--list", "--stack", name, "--region", REGION)
    assert listed.code == 0, listed.err
    assert listed.out.splitlines()[1].split()[:2] == ["failed-logins", "first_day,"], listed.out
    result = run(capsys, "query", "--saved", "failed-logins", "--param", "first_day=2026-11-01", "--param",
                 "last_day=2026-11-07", "--stack", name, "--region", REGION)
    assert result.code == 0, result.err
    executions = athena_backends[ACCOUNT][REGION].executions.values()
    latest = next(e for e in executions if e.query == saved.sql)
    assert latest.execution_parameters == ["'2026-11-01'", "'2026-11-07'"]


def test_aws_errors_are_one_sentence(capsys: pytest.CaptureFixture[str], deployed: tuple[LocalStack, str]) -> None:
    _, name = deployed
    boto3.client("dynamodb").delete_table(TableName=deployed[0].table)
    message = one_sentence_error(run(capsys, "status", "--stack", name, "--region", REGION))
    assert message.startswith("auditlake: error: AWS refused Scan: ResourceNotFoundException")


# -- output --------------------------------------------------------------------------------------------------


def test_durations_and_tables_read_well() -> None:
    assert [output.duration(s) for s in (0, 9.7, 250, 3600, 7500, 3 * 86_400 + 4 * 3600 + 59, None)] == \
        ["0s", "9s", "4m 10s", "1h", "2h 5m", "3d 4h", "-"]
    text = output.table(["vendor", "events", "newest"], [["asana", 1200, datetime(2026, 11, 2, 3, 4, 5, 6000)],
                                                      ["make", None, None], ["clickup", 34, "x" * 50]], max_width=12)
    assert text.splitlines() == ["VENDOR   EVENTS  NEWEST",
                                 "asana     1,200  2026-11-02T03:04:05.006Z",
                                 "make       NULL  NULL",
                                 "clickup      34  xxxxxxxxxxx…"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal() -> None:
    out = Terminal()
    progress = output.Progress(out)
    progress.update(0.25, "asana  a longer label first")
    progress.update(1.0, "asana  done")
    progress.close()
    first, second = out.getvalue().split("\r")[1:]
    assert "\n" not in first and second.endswith("\n")
    assert second.startswith(f"[{'#' * output.Progress.WIDTH}] 100.0%  asana  done")
    assert len(second.rstrip("\n")) >= len(first)  # the longer line before is overwritten whole


# -- doctor (a deployed stack on moto; the IAM policy simulator, which moto lacks, answered from the template) --


def _fake_policy_simulator(monkeypatch: pytest.MonkeyPatch, stack: LocalStack, name: str,
                           change: Any = lambda role, statements: statements) -> list[dict[str, Any]]:
    """Answers iam:SimulatePrincipalPolicy (every other call goes to moto) from the template's own collector
    policies, resolved, so `doctor`'s list of calls must agree with what the template grants: a call the list has
    and the policy lacks is denied here. `change(role logical id, statements)` plants a defect. The requests are
    checked against the IAM API's model, and recorded."""
    iam = boto3.client("iam")
    roles: dict[str, list[dict[str, Any]]] = {}
    for local in VENDORS.values():
        logical = f"{local.function_id}Role"
        stack.attrs[(f"{local.function_id}LogGroup", "Arn")] = \
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/auditlake/{name}/{local.vendor}-collector:*"
        physical = next(r["PhysicalResourceId"] for r in boto3.client("cloudformation").list_stack_resources(
            StackName=name)["StackResourceSummaries"] if r["LogicalResourceId"] == logical)
        arn = iam.get_role(RoleName=physical)["Role"]["Arn"]
        policy = stack._resolve(stack.resource(f"{local.function_id}Policy")["Properties"]["PolicyDocument"])
        roles[arn] = change(logical, policy["Statement"])
    requests: list[dict[str, Any]] = []
    real_call = BaseClient._make_api_call

    def call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation != "SimulatePrincipalPolicy":
            return real_call(self, operation, params)
        validate_parameters(params, self.meta.service_model.operation_model(operation).input_shape)
        requests.append(params)
        context = {entry["ContextKeyName"].lower(): entry["ContextKeyValues"]
                   for entry in params.get("ContextEntries", [])}
        results = []
        for action in params["ActionNames"]:
            for resource in params["ResourceArns"]:
                allowed = any(_grants(s, action, resource, context) for s in roles[params["PolicySourceArn"]])
                results.append({"EvalActionName": action, "EvalResourceName": resource,
                                "EvalDecision": "allowed" if allowed else "implicitDeny"})
        return {"EvaluationResults": results, "IsTruncated": False}

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    return requests


def _grants(statement: dict[str, Any], action: str, resource: str, context: dict[str, list[str]]) -> bool:
    """Whether one Allow statement grants the request, for the condition operators the collector policies use
    (an operator it does not know fails the test, rather than being ignored)."""
    def listed(value: Any) -> list[str]:
        return [str(v) for v in (value if isinstance(value, list) else [value])]

    assert statement["Effect"] == "Allow", statement
    if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in listed(statement["Action"])):
        return False
    if not any(fnmatch.fnmatchcase(resource, r) for r in listed(statement["Resource"])):
        return False
    for operator, entries in statement.get("Condition", {}).items():
        for key, expected in entries.items():
            values = context.get(key.lower())
            if values is None:
                return False
            if operator == "StringEquals":
                matched = all(v in listed(expected) for v in values)
            elif operator in {"StringLike", "ForAllValues:StringLike"}:
                matched = all(any(fnmatch.fnmatchcase(v, p) for p in listed(expected)) for v in values)
            else:
                raise AssertionError(f"the test's policy check does not know the condition operator {operator}")
            if not matched:
                return False
    return True


def _schedule(function: str, purpose: str, state: str = "ENABLED") -> None:
    """A collector's schedule as SAM's ScheduleV2 event makes it (moto's CloudFormation cannot)."""
    boto3.client("scheduler").create_schedule(
        Name=f"auditlake-prod-{function}-{purpose}", ScheduleExpression="rate(5 minutes)", State=state,
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}",
                "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/scheduler", "Input": '{"reconcile": {}}'
                if purpose == "reconcile" else "{}"})


def _checks(out: str) -> dict[str, str]:
    """Each check's line, by its name: `ok       secret asana: ...` -> {"secret asana": "ok ..."}."""
    lines = {}
    for line in out.splitlines()[1:-1]:
        verdict, _, rest = line.partition(" ")
        name, _, text = rest.strip().partition(": ")
        lines[name] = f"{verdict} {text}"
    return lines


@pytest.mark.slow
def test_doctor_on_a_healthy_stack_says_every_check_is_ok(
        capsys: pytest.CaptureFixture[str], stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "auditlake-prod"
    stack.refs["AWS::StackId"] = deploy(stack, name)
    requests = _fake_policy_simulator(monkeypatch, stack, name)
    with contextlib.ExitStack() as servers:
        for local in VENDORS.values():
            stack.put_secret(local.function_id, local.secret(servers.enter_context(serve(local.start()))))
            assert stack.invoke(local.function_id, environment=workspace.QUIET)["status"] == "ok"
            for purpose in ("collect", "reconcile"):
                _schedule(stack.refs[local.function_id], purpose)
        _schedule("someone-elses-function", "collect", state="DISABLED")  # not the stack's: not looked at
        topic = target.StackTarget(name, REGION).output("AlarmTopicArn")
        boto3.client("sns").subscribe(TopicArn=topic, Protocol="email", Endpoint="oncall@example.com")
        result = run(capsys, "doctor", "--stack", name, "--region", REGION)

    assert result.code == 0, result.out + result.err
    checks = _checks(result.out)
    assert set(checks) == {f"{check} {vendor}" for check in ("secret", "runs", "permissions") for vendor in VENDORS} \
        | {f"schedule {vendor} {purpose}" for vendor in VENDORS for purpose in ("collect", "reconcile")} \
        | {"alarm topic"}
    assert all(line.startswith("ok ") for line in checks.values()), checks
    assert checks["secret make"].startswith("ok filled, and Make accepted the token for organization_id")
    assert "oncall@example.com" in checks["alarm topic"]
    assert result.out.strip().endswith("no problems: the deployment is ready")
    assert not any(local.token in result.out + result.err for local in VENDORS.values())
    # Each role was asked about every call of the one list, on this deployment's resources.
    role_of = {r["PolicySourceArn"]: next(f"{local.function_id}Role" for local in VENDORS.values()
                                          if f"-{local.function_id}Role-" in r["PolicySourceArn"]) for r in requests}
    asked = {(role_of[r["PolicySourceArn"]], action) for r in requests for action in r["ActionNames"]}
    assert asked == {(local.function_id + "Role", action) for local in VENDORS.values()
                     for call in doctor.COLLECTOR_CALLS for action in call.actions}
    listing = next(r for r in requests if r["ActionNames"] == ["s3:ListBucket"] and "AsanaCollectorRole"
                   in r["PolicySourceArn"])
    assert listing["ResourceArns"] == [f"arn:aws:s3:::{stack.bucket}"]
    assert listing["ContextEntries"][0]["ContextKeyValues"][0].startswith("events/vendor=asana/dt=")


@pytest.mark.slow
def test_doctor_names_each_problem_with_its_fix(
        capsys: pytest.CaptureFixture[str], stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack as an operator may leave it: a placeholder secret, a wrong token, a plan without audit logs, an
    account named in the parameters whose secret was never created (beside one that was, and works), a collector
    failing, an unconfirmed subscription, a disabled schedule, reconciliations off, and the issue's missing
    KMS-through-DynamoDB permission planted in one role."""
    name = "auditlake-stage"
    stack.refs["AWS::StackId"] = deploy(stack, name, {"ReconcileIntervalHours": "0", "AshbyAccounts": "subsidiary",
                                                      "MakeAccounts": "us-subsidiary"})

    def without_dynamodb_kms(role: str, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in statements if not (role == "AsanaCollectorRole" and s.get("Sid") == "ArchiveKeyForDynamoDB")]

    _fake_policy_simulator(monkeypatch, stack, name, without_dynamodb_kms)
    clickup, make, us = VENDORS["clickup"], VENDORS["make"], ACCOUNTS["make"]["us-subsidiary"]
    with serve(VENDORS["asana"].start()) as asana_origin, serve(clickup.start()) as clickup_origin, \
            serve(make_simulator := make.start()) as make_origin, serve(us.start()) as us_origin:
        stack.put_account_secret("MakeCollector", "us-subsidiary", us.secret(us_origin))
        stack.put_secret("AsanaCollector", VENDORS["asana"].secret(asana_origin))
        stack.invoke("AsanaCollector", environment=workspace.QUIET)
        stack.put_secret("ClickUpCollector", {**clickup.secret(clickup_origin), "token": "pk_revoked_0000"})
        stack.put_secret("MakeCollector", make.secret(make_origin))
        make_simulator.enterprise = False  # the organization left the Enterprise plan
        # The ClickUp collector's failed runs, as Lambda counts them (they fail before writing any state).
        boto3.client("cloudwatch").put_metric_data(Namespace="AWS/Lambda", MetricData=[
            {"MetricName": metric, "Value": value, "Unit": "Count",
             "Dimensions": [{"Name": "FunctionName", "Value": stack.refs["ClickUpCollector"]}]}
            for metric, value in (("Invocations", 12.0), ("Errors", 12.0))])
        for local in VENDORS.values():
            function = stack.refs[local.function_id]
            _schedule(function, "collect", state="DISABLED" if local.vendor == "make" else "ENABLED")
            _schedule(function, "reconcile", state="DISABLED")
        topic = target.StackTarget(name, REGION).output("AlarmTopicArn")
        boto3.client("sns").subscribe(TopicArn=topic, Protocol="email", Endpoint="oncall@example.com")
        # moto confirms at once; SNS lists an email subscription not yet confirmed so.
        for subscription in sns_backends[ACCOUNT][REGION].subscriptions.values():
            subscription.arn = "PendingConfirmation"
        result = run(capsys, "doctor", "--stack", name, "--region", REGION)

    assert result.code == 1
    checks = _checks(result.out)
    assert checks["secret asana"].startswith("ok ")
    assert checks["secret ashby"].startswith("problem ") and "still holds the placeholder" in checks["secret ashby"]
    assert f"`auditlake secret set ashby --stack {name}`" in checks["secret ashby"]
    assert checks["secret clickup"].startswith("problem ClickUp refused it") and "401" in checks["secret clickup"]
    assert "pk_revoked_0000" not in result.out + result.err
    requirement = auditlake_vendors.adapter("make").audit_log_requirement
    assert checks["secret make"].startswith("problem Make answered that this account cannot read audit logs")
    assert requirement in checks["secret make"] and "administrator of the Make account" in checks["secret make"]
    # Each named account's secret is checked on its own: the us1 organization's token works where eu1's plan lapsed.
    assert checks["secret make@us-subsidiary"] == \
        f"ok filled, and Make accepted the token for organization_id 5302, zone {us.scope['zone']}"
    missing = checks["secret ashby@subsidiary"]
    assert missing.startswith("problem auditlake/") and "does not exist, though AshbyAccounts names subsidiary" \
        in missing and f"`auditlake secret set ashby --account subsidiary --stack {name}`" in missing
    assert checks["runs asana"].startswith("ok last run ")
    assert checks["runs ashby"].startswith("problem no run is recorded")
    assert checks["runs clickup"].startswith("problem 12 of 12 invocation(s) in the last hour failed")
    assert f"/auditlake/{name}/clickup-collector" in checks["runs clickup"]
    assert checks["alarm topic"].startswith("problem the subscription of oncall@example.com is pending")
    assert checks["schedule make collect"].startswith("problem ") and "DISABLED" in checks["schedule make collect"]
    assert all(checks[f"schedule {v} reconcile"].startswith("ok ") and "ReconcileIntervalHours=0"
               in checks[f"schedule {v} reconcile"] for v in VENDORS)
    assert checks["schedule asana collect"].startswith("ok ")
    denied = checks["permissions asana"]
    assert denied.startswith("problem role ") and "may not call kms:Decrypt on " in denied
    assert "use the state table's key through DynamoDB" in denied and "Fix: deploy the current template" in denied
    assert "kms:GenerateDataKey" in denied and "kms:Sign" not in denied
    assert all(checks[f"permissions {v}"].startswith("ok ") for v in ("ashby", "clickup", "make"))
    problems = sum(line.startswith("problem ") for line in checks.values())
    assert result.out.strip().endswith(f"{problems} problem(s)") and problems == 10
    for line in result.out.splitlines()[1:-1]:  # every problem says what to do, in one line
        assert line.startswith("ok ") or ". Fix: " in line, line


def test_doctor_says_when_an_scp_denies_what_the_template_grants(
        capsys: pytest.CaptureFixture[str], deployed: tuple[LocalStack, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's answer for a call the role's policy allows but the organization's SCP denies."""
    _, name = deployed
    real_call = BaseClient._make_api_call

    def call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation != "SimulatePrincipalPolicy":
            return real_call(self, operation, params)
        denied = "kms:Sign" in params["ActionNames"] and "MakeCollectorRole" in params["PolicySourceArn"]
        return {"IsTruncated": False, "EvaluationResults": [
            {"EvalActionName": action, "EvalResourceName": resource,
             "EvalDecision": "explicitDeny" if denied else "allowed",
             "OrganizationsDecisionDetail": {"AllowedByOrganizations": not denied}}
            for action in params["ActionNames"] for resource in params["ResourceArns"]]}

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    where = target.StackTarget(name, REGION)
    checks = {check.name: check for check in doctor.Doctor(where).run() if check.name.startswith("permissions")}
    assert [n for n, c in checks.items() if not c.ok] == ["permissions make"]
    make = checks["permissions make"]
    assert "may not call kms:Sign on " + where.output("DigestSigningKeyArn") in make.text
    assert make.fix.startswith("ask your AWS administrator to exempt role ")
    assert "an SCP of the organization" in make.fix

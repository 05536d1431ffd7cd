"""The watcher: the second pair of eyes the payout contract relies on.

    watcher = Watcher(get_settings())
    reports = watcher.run_once()          # or watcher.run(stop_event), every interval

Every `RootPosted` is checked against its public artefact and the chain (`verify.check`). A
bad pending root is revoked with the GUARDIAN key; a bad root found already matured (the
watcher was down) pauses the payout and raises an alert. Without a key the watcher only
reports. Each checked root gets a JSON report in `watcher_report_dir`; the ids already
decided are kept in `state.json` there, so a restart re-checks only a root still pending.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak

from api.core.settings import Settings, get_settings
from api.settlement.artefact import DEFAULT_MAX_BYTES, ArtefactError, load, parse
from api.settlement.verify import (
    ChainReader,
    Finding,
    Report,
    check,
    load_previous,
    root_status,
)
from chain.contracts import Deployment, load_deployment
from chain.rpc import Rpc, RpcError, RpcUnavailable
from chain.sender import ChainSendError, Sender
from observe import logs, metrics

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# an unreachable artefact is retried while the root has this much challenge time left,
# then treated as a bad root: nobody could have checked it
FETCH_RETRY_MARGIN = 600


def _calldata(signature: str, types: list[str], args: list[Any]) -> str:
    return "0x" + (keccak(text=signature)[:4] + abi_encode(types, args)).hex()


class Watcher:
    """Checks every posted root once (a pending one again after a restart) and acts on it."""

    def __init__(
        self,
        settings: Settings,
        *,
        deployment: Deployment | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.settings = settings
        self.rpc = Rpc(settings.rpc_url)
        self.deployment = deployment or load_deployment(settings.chain_id)
        self.reader = ChainReader(self.rpc, self.deployment)
        self.payout = self.deployment.address("PublisherPayout")
        self.report_dir = Path(settings.watcher_report_dir)
        self.artefact_dir = Path(settings.settlement_artefact_dir)
        self.max_bytes = max_bytes
        self.sender = (
            Sender(self.rpc, settings.guardian_private_key, settings.chain_id)
            if settings.guardian_private_key
            else None
        )
        self._checked: dict[str, str] = self._load_state()
        self._restarted = True

    # ---------------------------------------------------------------------------- state

    @property
    def state_path(self) -> Path:
        return self.report_dir / STATE_FILE

    def _load_state(self) -> dict[str, str]:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            log.warning(
                "watcher state %s unreadable (%s): checking every root again", self.state_path, exc
            )
            return {}
        checked = state.get("checked", {}) if isinstance(state, dict) else {}
        return {str(k): str(v) for k, v in checked.items()}

    def _save_state(self) -> None:
        self._write_json(self.state_path, {"checked": self._checked})

    def _write_json(self, path: Path, document: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(document, indent=2) + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ---------------------------------------------------------------------------- rounds

    def run(self, stop_event: threading.Event) -> None:
        """Check new roots every `watcher_interval_seconds` until `stop_event` is set; a
        failing round is logged and retried, never fatal."""
        mode = f"guardian {self.sender.address}" if self.sender else "read-only (no guardian key)"
        log.info("watching payout %s on chain %s, %s", self.payout, self.deployment.chain_id, mode)
        while not stop_event.is_set():
            try:
                self.run_once()
            except (RpcError, RpcUnavailable) as exc:
                log.warning("watcher round failed, retrying: %s", exc)
            except Exception:
                log.exception("watcher round failed, retrying")
            stop_event.wait(self.settings.watcher_interval_seconds)

    def run_once(self) -> list[Report]:
        """Check every posted root not decided yet; return the reports of this round."""
        head = self.rpc.block("latest")
        if head is None:
            raise RpcUnavailable("the node returned no head block")
        number, now = int(head["number"], 16), int(head["timestamp"], 16)
        roots = self.reader.roots(number)
        if self._restarted:
            pending = self.reader.view_uint("pending_root_id", hex(number))
            self._checked.pop(str(pending), None)
            self._restarted = False
        reports: list[Report] = []
        for root_id, posted in sorted(roots.items()):
            if posted.revoked or str(root_id) in self._checked:
                continue
            report = self._check_root(root_id, roots, now)
            if report is None:
                continue
            reports.append(report)
            self._checked[str(root_id)] = report.action or ("ok" if report.ok else "reported")
            metrics.WATCHER_VERDICTS.labels(self._checked[str(root_id)]).inc()
            self._save_state()
        return reports

    def _check_root(self, root_id: int, roots: Any, now: int) -> Report | None:
        posted = roots[root_id]
        try:
            artefact = parse(load(posted.artefact_uri, self.max_bytes, self.artefact_dir))
        except ArtefactError as exc:
            if posted.claimable_at - now > FETCH_RETRY_MARGIN:
                log.warning("root %d: artefact not available yet, retrying: %s", root_id, exc)
                return None
            facts = self.reader.facts()
            report = Report(
                root_id, posted.root, posted.artefact_uri, [Finding("artefact", str(exc))]
            )
            report.status = root_status(root_id, facts)
            self._act(report, facts.paused)
            return report
        previous, problem = load_previous(artefact, roots, self.artefact_dir, self.max_bytes)
        facts = self.reader.facts()
        findings = check(artefact, facts, previous)
        if problem is not None:
            findings.insert(0, Finding("previous_artefact", problem))
        if artefact.root_id != root_id:
            findings.insert(
                0,
                Finding(
                    "root_id", f"the artefact of root {root_id} says it is root {artefact.root_id}"
                ),
            )
        report = Report(
            root_id, posted.root, posted.artefact_uri, findings, status=root_status(root_id, facts)
        )
        if report.ok:
            path = self._write_report(report)
            log.info(
                "root %d (%s) agrees with its artefact and the chain; report %s",
                root_id,
                report.status,
                path,
            )
            return report
        self._act(report, facts.paused)
        return report

    # ---------------------------------------------------------------------------- acting

    def _act(self, report: Report, paused: bool) -> None:
        """Revoke a bad pending root; pause the payout over a bad matured one; then write the
        report and raise the alert that names it."""
        assert report.root_id is not None
        why = "; ".join(f"{f.code}: {f.message}" for f in report.findings[:5])
        if report.status == "pending":
            if self.sender is None:
                path = self._write_report(report)
                log.error(
                    "root %d is bad and pending; read-only, not revoked (%s). Report %s",
                    report.root_id,
                    why,
                    path,
                )
                return
            try:
                receipt = self.sender.send(
                    self.payout, _calldata("revoke_root(uint256)", ["uint256"], [report.root_id])
                )
                report.action = "revoked"
                report.details["revoke_tx"] = receipt["transactionHash"]
                path = self._write_report(report)
                log.error("root %d revoked: %s. Report %s", report.root_id, why, path)
                return
            except ChainSendError as exc:
                # it may have matured between the check and the transaction
                log.error("revoking root %d failed, pausing instead: %s", report.root_id, exc)
                report.details["revoke_error"] = str(exc)
                if self.reader.view_uint("pending_root_id") != report.root_id:
                    report.status = "matured"
        if report.status == "revoked":
            path = self._write_report(report)
            log.warning(
                "root %d is bad but already revoked (%s). Report %s", report.root_id, why, path
            )
            return
        if self.sender is not None and not paused:
            try:
                receipt = self.sender.send(self.payout, _calldata("pause()", [], []))
                report.action = "paused"
                report.details["pause_tx"] = receipt["transactionHash"]
            except ChainSendError as exc:
                report.details["pause_error"] = str(exc)
        path = self._write_report(report)
        log.critical(
            "ALERT: bad root %d (%s) not revoked; payout %s (%s). Report %s",
            report.root_id,
            report.status,
            "paused" if report.action == "paused" else ("was paused" if paused else "NOT paused"),
            why,
            path,
        )

    def _write_report(self, report: Report) -> Path:
        path = self.report_dir / f"root-{report.root_id}.json"
        self._write_json(path, {**report.to_json(), "checked_at": int(time.time())})
        return path

    def close(self) -> None:
        self.rpc.close()


def watch_main(argv: list[str] | None = None) -> int:
    """`watch [--once]`: check every posted root now and then every interval (until SIGINT or
    SIGTERM); with `--once`, one round, exit code 1 when a root was bad."""
    parser = argparse.ArgumentParser(
        prog="python -m api.settlement watch", description=watch_main.__doc__
    )
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    args = parser.parse_args(argv)
    logs.configure("watcher")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per RPC call
    watcher = Watcher(get_settings())
    try:
        if args.once:
            return 0 if all(r.ok for r in watcher.run_once()) else 1
        metrics.serve("watcher")
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        watcher.run(stop)
        return 0
    finally:
        watcher.close()

"""Settlement for operators.

    python -m api.settlement run [--epoch N] [--step spend|post] [--wait SECONDS]
    python -m api.settlement status [--json]
    python -m api.settlement release-root ROOT_ID      # after a revoked root was looked into
    python -m api.settlement reconcile                 # root totals and payout balance, to the unit
    python -m api.settlement verify --artefact FILE|URL [--account 0x…]
    python -m api.settlement watch [--once]

`run` does every step that can be done now and exits (the scheduler runs the same every few
minutes); `--step spend` (freeze, charge, spend, allocate: the escrow settler key) and
`--step post` (build and post roots: the payout settler key) let the two keys live in two
processes. `--wait` waits up to that long for receipts and finality instead of leaving them
to the next run. Exit status: 0 done or waiting, 1 an operator is needed, 2 bad arguments."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from api.core.settings import Settings
from api.settlement.service import (
    ALL_STEPS,
    POST_STEPS,
    SPEND_STEPS,
    Settlement,
    SettlementError,
    reconcile,
    settle,
    status,
)
from observe import logs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.settlement", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="settle every ended epoch and post roots")
    run.add_argument("--epoch", type=int, help="only this epoch (earlier ones must be done)")
    run.add_argument("--step", choices=["spend", "post"], help="only the steps of one key")
    run.add_argument("--wait", type=float, default=0.0, help="seconds to wait for finality")
    show = commands.add_parser("status", help="each epoch's and root's state")
    show.add_argument("--json", action="store_true")
    release = commands.add_parser("release-root", help="let a revoked root's epochs be rebuilt")
    release.add_argument("root_id", type=int)
    commands.add_parser("reconcile", help="check the books: root totals and payout balance")
    commands.add_parser("verify", add_help=False, help="check an artefact against the chain")
    commands.add_parser("watch", add_help=False, help="check every posted root; revoke bad ones")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logs.configure("settlement")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per RPC call
    if argv and argv[0] == "verify":
        from api.settlement.verify import verify_main

        return verify_main(argv[1:])
    if argv and argv[0] == "watch":
        from api.settlement.watcher import watch_main

        return watch_main(argv[1:])
    args = _parser().parse_args(argv)
    settings = Settings()
    try:
        if args.command == "run":
            if args.epoch is not None and args.epoch < 1:
                print("--epoch must be 1 or more", file=sys.stderr)
                return 2
            steps = {"spend": SPEND_STEPS, "post": POST_STEPS, None: ALL_STEPS}[args.step]
            report = settle(settings, steps, args.epoch, wait_seconds=args.wait)
            for line in report.done:
                print(line)
            for line in report.waiting:
                print(f"waiting: {line}")
            if not report.done and not report.waiting:
                print("nothing to settle now")
            return 0
        if args.command == "status":
            return _print_status(status(settings), args.json)
        if args.command == "reconcile":
            books = reconcile(settings)
            for book in books:
                print(
                    f"{book.token}: root {book.root_id} pays {book.root_total}, settled shares"
                    f" {book.settled_share} ({book.root_difference:+d}); payout holds"
                    f" {book.payout_balance}, funded − claimed {book.funded - book.claimed}"
                    f" ({book.balance_difference:+d})"
                )
            return 0 if all(book.ok for book in books) else 1
        if args.command == "release-root":
            settlement = Settlement(settings)
            epochs = settlement.release_root(args.root_id)
            print(f"root {args.root_id} released; epochs {epochs} go into the next root")
            return 0
    except SettlementError as exc:
        print(f"operator needed: {exc}", file=sys.stderr)
        return 1
    return 2


def _print_status(state: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(state, default=str, indent=2))
        return 0
    print("epoch  state      campaigns  charged  publisher share  fee  written off  root  note")
    for e in state["epochs"]:
        print(
            f"{e['epoch']:>5}  {e['state']:<9}  {e['campaigns']:>9}  {e['charged']:>7}"
            f"  {e['publisher_share']:>15}  {e['fee']:>3}  {e['written_off']:>11}"
            f"  {e['root_id'] if e['root_id'] is not None else '-':>4}  {e['note']}"
        )
    print()
    print("root  state            on-chain    leaves  epochs  note")
    for r in state["roots"]:
        print(
            f"{r['root_id']:>4}  {r['state']:<15}  {r['onchain'] or 'not seen':<10}"
            f"  {r['leaves']:>6}  {r['epochs']}  {r['note']}"
        )
        if r["state"] == "operator_needed":
            print(
                f"      operator needed: root {r['root_id']} was revoked. Find why (the"
                " watcher's report), then `python -m api.settlement release-root"
                f" {r['root_id']}` to build its epochs into the next root."
            )
    for tx in state["open_transactions"]:
        print(f"transaction {tx['step']}: {tx['status']} {tx['tx_hash']} {tx['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

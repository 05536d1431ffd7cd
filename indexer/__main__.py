"""`python -m indexer run | backfill --from N --to M | migrate`."""

from indexer.cli import main

main()

"""Fixtures for the indexer tests (defined in `tests/support/fixtures.py`, which says what each
one gives):

- `pg_server` (session), `database_url` (a fresh empty database per test), `make_database`;
- `anvil` (session anvil, reverted after each test), `deployment` (session, parsed
  deployments JSON), `deployments_dir` (session), `chain` (`ChainDriver`);
- `fresh_anvil` (an anvil of the test's own with the deployment: use it for `anvil_reorg`);
- `flaky_rpc` (a fault-injecting JSON-RPC proxy in front of `anvil`).

Helpers: `tests.support.tables.snapshot/diff` to compare databases,
`chain.generate_activity(n_events, seed)` for bulk activity.
"""

from tests.support.fixtures import (  # noqa: F401
    anvil,
    chain,
    database_url,
    flaky_rpc,
    fresh_anvil,
    make_database,
)

"""Test harness shared by the indexer tests: PostgreSQL, anvil, a chain driver, a flaky RPC
proxy and table snapshots. Self-tests: `pytest tests/support`."""

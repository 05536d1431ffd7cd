"""The harness's own fixtures, for its self-tests (`pytest tests/support`)."""

from tests.support.fixtures import (  # noqa: F401
    anvil,
    chain,
    database_url,
    flaky_rpc,
    fresh_anvil,
    make_database,
)

"""The harness's own fixtures, for its self-tests (`pytest tests/support`)."""

from tests.support.fixtures import (  # noqa: F401
    anvil,
    anvil_session,
    chain,
    database_url,
    deployment,
    deployment_record,
    deployments_dir,
    flaky_rpc,
    fresh_anvil,
    make_database,
    pg_server,
)
from tests.support.stack import stack  # noqa: F401

"""The journey runs on the session stack (anvil, Postgres, Redis, API, writer) with the
settlement settings the settlement suite uses: the local chain's settler keys, no IVT hold."""

from tests.api.conftest import redis_url  # noqa: F401 (fixture used by name)
from tests.settlement.conftest import settlement_settings  # noqa: F401 (fixture used by name)
from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    anvil_session,
    deployment_record,
    deployments_dir,
    pg_server,
)
from tests.support.stack import stack  # noqa: F401 (the session stack)

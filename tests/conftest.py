"""The session fixtures every suite shares, defined here once: a session fixture imported into
several directories' conftests is a separate fixture in each, started once per directory, so
a run would start an anvil, an embedded Redis and a whole end-to-end stack (API, writer,
Redis, a database) per suite. Defined here, each starts once per run and the suites share
them; the function-scoped fixtures (`anvil`, `chain`, `database_url`, …) stay in the suites
that use them and build on these."""

from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    anvil_session,
    deployment,
    deployment_record,
    deployments_dir,
    pg_server,
    redis_url,
)
from tests.support.stack import stack  # noqa: F401 (the session stack)

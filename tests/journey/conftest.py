"""The journey runs on the session stack (anvil, Postgres, Redis, API, writer) with the
settlement settings the settlement suite uses: the local chain's settler keys, no IVT hold."""

from tests.settlement.conftest import settlement_settings  # noqa: F401 (fixture used by name)

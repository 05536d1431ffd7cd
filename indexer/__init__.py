"""Buzzer indexer: follows the contracts' events over JSON-RPC into Postgres."""

"""x402 payments for ad slots, against a real anvil and PostgreSQL."""

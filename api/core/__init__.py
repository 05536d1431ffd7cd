"""Shared API plumbing: settings, errors, database, Redis, chain client. Nothing domain-specific."""

"""Tracking: impression and click beacons, invalid-traffic rules, the Redis Stream they
go through and the writer that lands them in Postgres."""

"""Settlement: per-epoch spend, cumulative publisher earnings and their Merkle root."""

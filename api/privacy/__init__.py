"""Privacy (seed F3): a wallet owner exports and deletes its off-chain data."""

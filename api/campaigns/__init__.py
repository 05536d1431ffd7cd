"""Advertisers and campaigns (seed B3): profiles, campaign drafts, on-chain registration
and funding transactions; on-chain facts come from the indexer."""

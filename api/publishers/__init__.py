"""Publishers (seed B2): profile, on-chain registration, and (to come) sites and slots."""

"""Sign-in with Ethereum (EIP-4361): single-use nonces, verified messages, wallet-bound JWTs."""

"""Ad serving: x402 payments for ad slots, matching, and the `/x402/ad` route."""

"""Analytics: rollups of the tracked events and the endpoints that read them."""

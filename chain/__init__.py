"""Buzzer's one chain layer: deployments and ABIs, the JSON-RPC client and the log decoder
(a transaction sender will join them); everything else reaches the chain through here."""

"""Buzzer's one chain layer: deployments and ABIs, the JSON-RPC client, the log decoder and
the transaction sender every backend key uses; everything else reaches the chain through
here."""

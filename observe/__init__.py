"""What every Buzzer process shows its operators: structured logs (`observe.logs`) and
Prometheus metrics (`observe.metrics`). The lowest layer, below `chain/`: every process and
every layer may import it, it imports none of them."""

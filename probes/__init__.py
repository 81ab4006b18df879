"""Probes for SCMT checkpoints: the causal-leakage gate and, later, schema, memory and entropy probes."""

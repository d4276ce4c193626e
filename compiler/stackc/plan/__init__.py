"""The deployment plan: what lowering decided, the only thing targets read (data, no decisions)."""

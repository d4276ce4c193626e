"""stackc: compile one stack spec into LLM inference deployments."""

"""``stackc up``: the plan's model servers as local processes, the reference router in front."""

"""Reading a stack spec: the IR, TOML with positions, conversion, model sources."""

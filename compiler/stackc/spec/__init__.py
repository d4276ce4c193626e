"""Reading and checking a stack spec: the IR, TOML with positions, conversion, validation, schema."""

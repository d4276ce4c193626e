"""Engine plugins that ship with stackc; each is registered through the `stackc` entry points."""

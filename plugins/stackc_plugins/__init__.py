"""The built-in stackc plugins: ordinary plugins, registered exactly as third-party ones are."""

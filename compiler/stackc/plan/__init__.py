"""Lowering: the checked spec becomes the deployment plan that targets translate."""

"""Lowering: the checked spec becomes the deployment plan (``stackc.plan``) that targets translate."""

"""Shipping: ``task=pipeline`` (data to a canaried version, with infra validation) and
``task=init_ci`` (a CI/CD workflow for a user's repository)."""

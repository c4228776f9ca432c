"""Governance: fairness and champion gates, model cards, reproduction of a version."""

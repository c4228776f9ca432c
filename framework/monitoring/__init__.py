"""Monitoring: drift detection, live quality windows, rollout policy, reports."""

"""Hydra sweeper that runs multirun sweeps on Ray Tune."""

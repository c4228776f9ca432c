"""The serving application's public entry point for Ray's tools.

Ray Serve config files name ``framework.serving.app:build_app`` as their ``import_path``;
the builder itself lives in ``deploy``.
"""

from framework.serving.deploy import build_app

__all__ = ["build_app"]

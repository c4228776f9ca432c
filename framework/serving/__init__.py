"""Serving: a Ray Serve application built from the ``serve/`` and ``security/`` config."""

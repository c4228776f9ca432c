"""The bundled config, shipped in the package as ``framework.conf`` (Hydra: pkg://framework.conf)."""

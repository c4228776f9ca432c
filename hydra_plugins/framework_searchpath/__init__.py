"""Adds the working directory's ``conf/`` folder to Hydra's config search path."""

"""A ``conf/`` folder in the working directory adds config options to the bundled ones.

``task=init`` writes ``conf/data/<name>.yaml`` in the working directory; with this plugin the
next ``python -m framework data=<name>`` finds it, wherever the command runs. The bundled
config comes first, so a file of the same name there wins; the folder is added only when it
exists (Hydra warns about a search path entry that does not).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

BUNDLED = (Path(__file__).resolve().parents[2] / "conf").resolve()


class WorkingConfSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        here = Path.cwd() / "conf"
        if here.is_dir() and here.resolve() != BUNDLED:
            search_path.append(provider="framework-working-dir", path=f"file://{here.resolve()}")

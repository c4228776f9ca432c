"""A ``conf/`` folder in the working directory layers over the bundled config.

The bundled config ships inside the package (``pkg://framework.conf``). A project of one's
own is ``pip install`` plus a ``conf/`` folder: its files come first, so they add options
(``task=init`` writes ``conf/data/<name>.yaml``; the next ``python -m framework
data=<name>`` finds it) and replace bundled ones of the same name (``conf/serve/default.yaml``,
or a whole ``conf/config.yaml``). The folder is added only when it exists (Hydra warns about
a search path entry that does not), and not when it is the bundled one (in the checkout).
``--config-dir`` adds another folder the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

BUNDLED = (Path(__file__).resolve().parents[2] / "framework" / "conf").resolve()


def _config_dirs(argv: list[str]) -> list[Path]:
    """The folders named by ``--config-dir``/``-cd`` on the command line."""
    found = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            found.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            found.append(Path(arg.split("=", 1)[1]))
    return found


class WorkingConfSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # Hydra puts --config-dir after the bundled config, where it could only add options;
        # here it comes first, then the working directory's conf/, then the bundled one.
        here = Path.cwd() / "conf"
        if here.is_dir() and here.resolve() != BUNDLED:
            search_path.prepend(provider="framework-working-dir", path=f"file://{here.resolve()}")
        for folder in reversed(_config_dirs(sys.argv)):
            if folder.is_dir():
                search_path.prepend(
                    provider="framework-config-dir", path=f"file://{folder.resolve()}"
                )

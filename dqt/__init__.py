"""The DQT sweep toolkit: one import package, `dqt`, with the trainer (`dqt.core`), the sweeps
(`dqt.sweeps`) and the analysis (`dqt.analysis`).

In the repository those three live at the top level (core/, sweeps/, analysis/) beside this
folder; an installed wheel maps them under dqt/ (pyproject.toml, package-dir). In a clone,
this package's search path also holds the repository root, so `dqt.core` is core/ there too.
"""

from pathlib import Path

_root = Path(__file__).resolve().parent.parent
if (_root / "core" / "config.py").is_file() and str(_root) not in __path__:
    __path__.append(str(_root))

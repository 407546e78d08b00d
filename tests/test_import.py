"""``import scoresde`` stays light: no matplotlib or Pillow at import time.

(tqdm is not checked: ``import torch`` itself loads it.)
"""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_load_plotting_libraries() -> None:
    code = (
        "import sys, scoresde, scoresde.viz, scoresde.cli.__main__; "
        "print(','.join(m for m in ('matplotlib', 'PIL') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_every_public_name_resolves_lazily_and_is_listed_once() -> None:
    """``__all__`` and the TYPE_CHECKING imports (the lazy table) name the same things."""
    import scoresde

    assert set(scoresde.__all__) - {"__version__"} == set(scoresde._where())
    assert len(scoresde.__all__) == len(set(scoresde.__all__))
    for name in scoresde.__all__:
        assert getattr(scoresde, name) is not None, name

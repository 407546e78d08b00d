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

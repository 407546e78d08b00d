#!/usr/bin/env bash
# Create .venv inside the repository and install scoresde with its dev tools.
# The optional extras the tests exercise (diffusers; docs: the site build of tests/test_docs_site.py)
# are installed too.
# torch is pinned to 2.13.0 through constraints.txt (a CPU wheel; no CUDA download).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,diffusers,docs]"

#!/usr/bin/env bash
# The one install recipe for fewshot: a project virtual environment in .venv with
# torch, torchaudio (whose wheel declares no torch dependency), fewshot itself and
# the musicnn checkpoints (installed with --no-deps: its pins fail on Python 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchaudio==2.11.0"
.venv/bin/python -m pip install -q -e ".[test,dask]"
.venv/bin/python -m pip install -q --no-deps "musicnn==0.1.0"
.venv/bin/python -c "import torch, torchaudio, fewshot; print('fewshot', fewshot.__version__, '| torch', torch.__version__, '| torchaudio', torchaudio.__version__)"

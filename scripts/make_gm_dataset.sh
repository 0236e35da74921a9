#!/usr/bin/env bash
# Install what the real-audio datasets need (Debian/Ubuntu, as root), then build them
# outside git under data_local/ (see docs/real-audio.md).
#   scripts/make_gm_dataset.sh            # gm_instruments (10 classes x 48 clips) + sonicpi_samples
#   SKIP_APT=1 scripts/make_gm_dataset.sh # packages already there
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SKIP_APT:-}" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
    fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small csound-soundfont \
    sonic-pi-samples
fi
PY=${PYTHON:-.venv/bin/python}
"$PY" scripts/make_gm_dataset.py "$@"
"$PY" scripts/make_sfx_dataset.py

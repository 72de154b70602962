#!/usr/bin/env bash
# Install what tests/jupyterlab_test.ts needs on a Debian machine (as root), idempotently:
#   - Chromium from Debian (driven by npm's playwright-core; never `playwright install`),
#   - JupyterLab 4.6.4 and plotly (which bundles JupyterLab's Plotly renderer) in a venv,
#     from pip's local package index, named explicitly so that pip does not retry an
#     unreachable default index for minutes,
#   - the Deno Jupyter kernel.
#
#   tools/install_jupyterlab.sh
#
# Environment: DIGITSUM_JUPYTERLAB_VENV (default /opt/digitsum-jupyterlab), DIGITSUM_PIP_INDEX
# (default file:///opt/pypi/simple), DIGITSUM_PIP_EXTRA_INDEX (default
# file:///opt/pypi-more/simple), DENO (default: deno on PATH, else npx -y deno@2.9.6).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
VENV="${DIGITSUM_JUPYTERLAB_VENV:-/opt/digitsum-jupyterlab}"
INDEX="${DIGITSUM_PIP_INDEX:-file:///opt/pypi/simple}"
EXTRA_INDEX="${DIGITSUM_PIP_EXTRA_INDEX:-file:///opt/pypi-more/simple}"
JUPYTERLAB_VERSION=4.6.4

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "install_jupyterlab.sh: apt-get install ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! "$VENV/bin/jupyter-lab" --version 2>/dev/null | grep -qx "$JUPYTERLAB_VERSION" ||
  ! "$VENV/bin/python" -c "import plotly" >/dev/null 2>&1; then
  echo "install_jupyterlab.sh: JupyterLab $JUPYTERLAB_VERSION and plotly into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    --index-url "$INDEX" --extra-index-url "$EXTRA_INDEX" \
    "jupyterlab==$JUPYTERLAB_VERSION" plotly
fi
"$VENV/bin/jupyter" labextension list 2>&1 | grep -q jupyterlab-plotly ||
  { echo "install_jupyterlab.sh: plotly installed no JupyterLab renderer" >&2; exit 1; }

if command -v deno >/dev/null 2>&1; then DENO="${DENO:-deno}"; else DENO="${DENO:-npx -y deno@2.9.6}"; fi
$DENO jupyter --install --force >/dev/null 2>&1
echo "install_jupyterlab.sh: JupyterLab $("$VENV/bin/jupyter-lab" --version), $(/usr/bin/chromium --version 2>/dev/null | head -1), Deno kernel installed"

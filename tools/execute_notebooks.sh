#!/usr/bin/env bash
# Re-execute digitsum's notebooks in place, headless, so that the committed .ipynb files carry
# the outputs of a real run.
#
#   tools/execute_notebooks.sh [--quick|--full] [NOTEBOOK...]
#
#   --quick   DIGITSUM_QUICK=1: 512 training images and 1 epoch per run (default)
#   --full    the study's configuration (hours on a CPU; VGG needs its weights, see README)
#   NOTEBOOK  notebooks to run (default: notebooks/study.ipynb notebooks/beyond.ipynb)
#
# Needs Jupyter's nbconvert and the Deno kernel:
#   apt-get install jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel
#   deno jupyter --install
set -euo pipefail
cd "$(dirname "$0")/.."

mode=quick
notebooks=()
for arg in "$@"; do
  case "$arg" in
    --quick) mode=quick ;;
    --full) mode=full ;;
    -h | --help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "execute_notebooks.sh: unknown option '$arg' (expected --quick or --full)" >&2
      exit 2
      ;;
    *)
      if [ ! -f "$arg" ]; then
        echo "execute_notebooks.sh: cannot read $arg: no such notebook" >&2
        exit 2
      fi
      notebooks+=("$arg")
      ;;
  esac
done
[ ${#notebooks[@]} -gt 0 ] || notebooks=(notebooks/study.ipynb notebooks/beyond.ipynb)

if ! command -v jupyter >/dev/null 2>&1 || ! jupyter nbconvert --version >/dev/null 2>&1; then
  echo "execute_notebooks.sh: jupyter nbconvert not found; install it with" >&2
  echo "  apt-get install jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel" >&2
  exit 1
fi
# Read the list first: with pipefail, `grep -q` closing the pipe early can fail the check.
kernels="$(jupyter kernelspec list 2>/dev/null || true)"
if ! grep -qE '^\s+deno\s' <<<"$kernels"; then
  echo "execute_notebooks.sh: the Deno Jupyter kernel is not installed; run 'deno jupyter --install'" >&2
  exit 1
fi

if [ "$mode" = quick ]; then export DIGITSUM_QUICK=1; else export DIGITSUM_QUICK=0; fi
export PYDEVD_DISABLE_FILE_VALIDATION=1

for nb in "${notebooks[@]}"; do
  echo "== $nb ($mode mode)"
  start=$(date +%s)
  # No timeout per cell: a full run trains for hours. record_timing off keeps diffs small.
  log=$(mktemp)
  status=0
  jupyter nbconvert --to notebook --execute --inplace \
    --ExecutePreprocessor.kernel_name=deno \
    --ExecutePreprocessor.timeout=-1 \
    --ExecutePreprocessor.record_timing=False \
    "$nb" >"$log" 2>&1 || status=$?
  grep -v -e 'Debugger warning' -e 'frozen modules' -e 'make the debugger' \
    -e 'Debugging will proceed' -e 'is unstable and might change' "$log" || true
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "== $nb FAILED (exit $status)" >&2
    exit "$status"
  fi
  # nbconvert writes its own JSON layout; keep the files as tools/check_notebook_format.ts expects
  # them (deno.json excludes notebooks/ from 'deno fmt', so format through stdin).
  if command -v deno >/dev/null 2>&1; then
    formatted=$(mktemp)
    deno fmt --ext ipynb - <"$nb" >"$formatted" && mv "$formatted" "$nb"
  fi
  echo "== $nb done in $(($(date +%s) - start)) s, $(du -k "$nb" | cut -f1) KiB"
done

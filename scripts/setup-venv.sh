#!/usr/bin/env bash
# Build (or reuse) the virtual environment for one stack and give this checkout its own view of it.
#
#   scripts/setup-venv.sh ipex    -> .venv        (torch 2.8 + IPEX 2.8.0, the default)
#   scripts/setup-venv.sh stock   -> .venv-stock  (newest torch, no IPEX)
#
# Each environment is built from requirements/<stack>.lock, whose versions are
# exact. It lives in a cache keyed on the lock file and the Python version
# ($NERVANA_LSTM_VENVS, default ~/.cache/nervana-lstm/venvs), so a second clone
# or a CI run on the same machine reuses it, and a run with nothing changed
# takes seconds. A build that fails half-way leaves no marker and is redone.
set -euo pipefail

# pip warns about every local index folder a package is missing from; keep the rest.
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }

stack=${1:-ipex}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock="$root/requirements/$stack.lock"
case "$stack" in
  ipex) link="$root/.venv" ;;
  stock) link="$root/.venv-stock" ;;
  *) echo "setup-venv: unknown stack '$stack'; expected 'ipex' or 'stock'" >&2; exit 2 ;;
esac
[ -f "$lock" ] || { echo "setup-venv: missing $lock" >&2; exit 2; }

python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup-venv: '$python' not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || {
  echo "setup-venv: '$python' does not run; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 2
}
if [ "$pyver" != "3.11" ]; then
  echo "setup-venv: need Python 3.11 (IPEX 2.8 wheels are cp311 here), '$python' is $pyver" >&2
  exit 2
fi

own_marker="$link/.nervana-lstm-stack"
if [ -e "$link" ] && [ ! -f "$own_marker" ] && [ ! -L "$link" ]; then
  echo "setup-venv: $link exists and was not made by this script; move it away" >&2
  exit 2
fi

key=$( (cat "$lock"; "$python" -VV) | sha256sum | cut -c1-16)
home=${NERVANA_LSTM_VENVS:-$HOME/.cache/nervana-lstm/venvs}
venv="$home/$stack-$key"

if [ ! -f "$venv/.complete" ]; then
  echo "setup-venv: building the $stack environment in $venv (a few minutes the first time)"
  rm -rf "$venv"
  mkdir -p "$home"
  "$python" -m venv "$venv"
  quiet "$venv/bin/python" -m pip install --quiet -r "$lock"
  quiet "$venv/bin/python" -m pip check
  touch "$venv/.complete"
fi

# The checkout gets a thin environment of its own (.venv or .venv-stock): the cached
# environment's packages are reached through a .pth file, and this repo is installed
# editable there, so each clone runs its own code while sharing the heavy packages.
if [ -L "$link" ] || [ "$(cat "$own_marker" 2>/dev/null)" != "$venv" ]; then
  rm -rf "$link"
  "$python" -m venv --without-pip "$link"
  base_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  own_site=$("$link/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # addsitedir (not a bare path line) so the cached environment's own .pth files run too
  echo "import site; site.addsitedir('$base_site')" >"$own_site/_nervana_lstm_stack.pth"
  echo "$venv" >"$own_marker"
fi
# OpenVINO's command-line tools (benchmark_app, ovc) come with its wheel; reach them
# from the checkout's environment too
for tool in benchmark_app ovc; do
  if [ -x "$venv/bin/$tool" ]; then ln -sf "$venv/bin/$tool" "$link/bin/$tool"; fi
done
# an editable install left in the shared environment would shadow other clones
if [ -n "$(ls "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    | grep -i '^nervana_lstm.*dist-info$' || true)" ]; then
  quiet "$venv/bin/python" -m pip uninstall --quiet --yes nervana-lstm
fi
quiet "$venv/bin/python" -m pip --python "$link/bin/python" install --quiet --no-deps \
  --no-build-isolation -e "$root"
(cd / && "$link/bin/python" -c "import nervana_lstm, sys; assert nervana_lstm.__file__.startswith('$root/'), nervana_lstm.__file__") \
  || { echo "setup-venv: install failed" >&2; exit 1; }
echo "setup-venv: $stack ready at $(basename "$link") (packages from $venv)"

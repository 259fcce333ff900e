#!/usr/bin/env bash
# Installs what clipscale needs on a Debian 12 machine: Debian packages and a
# Python venv (the torch wheel's LibTorch, open_clip for parity tests) in a cache
# folder outside the checkout. Idempotent; seconds when everything is present.
#
#   CLIPSCALE_CACHE   cache folder (default ~/.cache/clipscale)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CLIPSCALE_CACHE:-$HOME/.cache/clipscale}

apt_packages=(
  build-essential cmake ninja-build pkg-config ccache git
  python3 python3-venv python3-dev
  openmpi-bin libopenmpi-dev
  libyaml-cpp-dev libabsl-dev libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc
  libgtest-dev libgmock-dev libbenchmark-dev
  libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libwebp-dev zlib1g-dev libcurl4-openssl-dev
  libre2-dev libutf8proc-dev nlohmann-json3-dev libcli11-dev
  slurm-wlm iproute2  # the Slurm and multi-host tests: slurmctld/slurmd, srun; ip netns
  clang libclang-rt-dev llvm  # sanitizer build, libFuzzer, llvm-symbolizer (scripts/sanitize.sh, fuzz.sh)
)

missing=()
for pkg in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

venv=$cache/venv
stamp=$venv/.clipscale-requirements.sha256
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating the Python venv in $venv (torch wheel: a few GB, once)"
  mkdir -p "$cache"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi

# Later steps (cmake) find the venv through this variable.
export CLIPSCALE_CACHE=$cache
echo "setup: ok (venv $venv)"

#!/usr/bin/env bash
# The GPU checks, as one prepared script for the lent GPU machine (read
# ../shared/notes/gpu-machine.md: one H200, torch in its python3, nvcc, NCCL
# from the nvidia wheels; no apt, no network, none of our Debian libraries).
#
#   scripts/gpu-check.sh prepare   here, on Debian 12: downloads the .deb files
#                                  of the libraries the GPU machine lacks into
#                                  .gpu-carry/debs (git-ignored) and the wheels
#                                  of OpenCLIP and its small dependencies into
#                                  .gpu-carry/wheels; prints their size (what
#                                  a device call carries is limited to 64 MiB)
#   scripts/gpu-check.sh run       there (device tool: carry [".gpu-carry"]):
#                                  unpacks them into a prefix under /tmp,
#                                  builds the `cuda` preset against that
#                                  machine's torch, runs every gpu-labelled
#                                  test and bench/gpu_bench.py, and writes
#                                  $OUT/summary.txt with the logs beside it
#
# `run` without a CUDA device (here) does every step that needs none: it
# configures and builds the CUDA code with this machine's libraries, lists the
# gpu-labelled tests, runs them (ctest reports them as skipped) and checks
# that the benchmarks start and say that they measured nothing. Exit status:
# that of the first failing step; 0 when all ran.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
carry=$root/.gpu-carry
mode=${1:-run}

# The Debian packages whose files the build and the tests need there: headers,
# CMake/pkg-config files and shared libraries (their own Debian dependencies
# that an Ubuntu or Debian base with a compiler lacks), and Open MPI's mpiexec.
debs=(
  libabsl-dev libabsl20220623 libyaml-cpp-dev libyaml-cpp0.7
  libprotobuf-dev libprotobuf32 libprotobuf-lite32 libprotoc32 protobuf-compiler
  libgrpc++-dev libgrpc-dev libgrpc++1.51 libgrpc29 protobuf-compiler-grpc libc-ares2 libc-ares-dev
  libre2-dev libre2-9 libssl-dev libssl3 zlib1g-dev
  libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev googletest
  libbenchmark-dev libbenchmark1debian
  libpng-dev libpng16-16 libturbojpeg0-dev libturbojpeg0 libwebp-dev libwebp7 libwebpmux3
  libwebpdemux2 libutf8proc-dev libutf8proc2
  libcurl4-openssl-dev libcurl4 libnghttp2-14 libidn2-0 libunistring2 librtmp1 libssh2-1
  libpsl5 libgnutls30 libhogweed6 libnettle8 libtasn1-6 libp11-kit0 libldap-2.5-0
  libsasl2-2 libsasl2-modules-db libbrotli1
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libpmix2 libhwloc15 libevent-2.1-7
  libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1 libucx0 libibverbs1 librdmacm1
  libnl-3-200 libnl-route-3-200 libpsm2-2 libpsm-infinipath1 libltdl7 libpciaccess0
  libmunge2 libxnvctrl0 ocl-icd-libopencl1
  pkgconf pkgconf-bin libpkgconf3
)
# OpenCLIP for the benchmark's baseline, at the versions the project venv holds
# (scripts/requirements.txt's pins); torch and numpy are the machine's.
wheels=(open-clip-torch ftfy wcwidth regex tqdm)

step_status=0
step() {  # step NAME COMMAND...: runs it with its output in $log_dir/NAME.log
  local name=$1
  shift
  echo "gpu-check: $name"
  if "$@" >"$log_dir/$name.log" 2>&1; then
    echo "  ok"
    echo "$name: ok" >>"$summary"
  else
    local rc=$?
    echo "  FAILED ($rc): last lines of $log_dir/$name.log:"
    tail -n 15 "$log_dir/$name.log" | sed 's/^/    /'
    echo "$name: FAILED ($rc)" >>"$summary"
    [ "$step_status" -ne 0 ] || step_status=$rc
  fi
}

if [ "$mode" = prepare ]; then
  mkdir -p "$carry/debs" "$carry/wheels"
  (cd "$carry/debs" && apt-get download "${debs[@]}") || exit 1
  py=${CLIPSCALE_PYTHON:-$HOME/.cache/clipscale/venv/bin/python}
  pins=()
  for w in "${wheels[@]}"; do
    pins+=("$w==$("$py" -c "import importlib.metadata as m; print(m.version('$w'))")") || exit 1
  done
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$carry/wheels" "${pins[@]}" || exit 1
  du -sh "$carry"
  size=$(du -sb "$carry" | cut -f1)
  if [ "$size" -gt $((56 << 20)) ]; then
    echo "gpu-check: $carry is $((size >> 20)) MiB: too close to the 64 MiB carry limit" >&2
    exit 1
  fi
  echo "gpu-check: ready; run it there as: scripts/gpu-check.sh run (carry .gpu-carry)"
  exit 0
fi
[ "$mode" = run ] || { echo "usage: scripts/gpu-check.sh prepare|run" >&2; exit 2; }

out=${OUT:-$root/build-cuda/gpu-check}
log_dir=$out/logs
mkdir -p "$log_dir"
summary=$out/summary.txt
{
  echo "clipscale GPU check, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
    echo "no nvidia-smi: no GPU here"
} >"$summary"

# The Python whose torch provides LibTorch: the project venv here, python3 there.
py=${CLIPSCALE_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$HOME/.cache/clipscale/venv/bin/python" ]; then
    py=$HOME/.cache/clipscale/venv/bin/python
  else
    py=$(command -v python3)
  fi
fi
have_gpu=0
"$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && have_gpu=1
echo "python: $py, torch $("$py" -c 'import torch; print(torch.__version__)' 2>&1), GPU: $have_gpu" >>"$summary"

# The carried libraries, unpacked into a prefix (never into /).
if compgen -G "$carry/debs/*.deb" >/dev/null; then
  prefix=${TMPDIR:-/tmp}/clipscale-gpu-prefix
  unpack() {
    rm -rf "$prefix" && mkdir -p "$prefix"
    for deb in "$carry"/debs/*.deb; do
      if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$deb" "$prefix" || return 1
      else  # an .ar archive holding data.tar.*
        "$py" - "$deb" "$prefix" <<'EOF' || return 1
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
pos = 8
while pos < len(data):
    name, size = data[pos:pos + 16].decode().strip(), int(data[pos + 48:pos + 58])
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        tarfile.open(fileobj=io.BytesIO(body)).extractall(sys.argv[2], filter="tar")
    pos += 60 + size + (size & 1)
EOF
      fi
    done
    # Open MPI relocates with OPAL_PREFIX; its wrapper data and libraries say /usr.
    if [ -f "$prefix/usr/lib/x86_64-linux-gnu/pkgconfig/ompi-c.pc" ]; then
      sed -i "s|^prefix=/usr|prefix=$prefix/usr|" "$prefix"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
    fi
  }
  step unpack-libraries unpack
  multiarch=$prefix/usr/lib/x86_64-linux-gnu
  export CMAKE_PREFIX_PATH=$prefix/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  export PKG_CONFIG_PATH=$multiarch/pkgconfig:$prefix/usr/share/pkgconfig
  export LD_LIBRARY_PATH=$multiarch:$multiarch/openmpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PATH=$prefix/usr/bin:$PATH
  export OPAL_PREFIX=$prefix/usr
  export OMPI_MCA_plm_rsh_agent=""
  extra_cmake=(-DMPIEXEC_EXECUTABLE="$prefix/usr/bin/mpiexec.openmpi"
               -DMPI_C_COMPILER="$prefix/usr/bin/mpicc.openmpi")
else
  extra_cmake=()
fi
# OpenCLIP there (the carried wheels are for its Python 3.12); here the venv has it.
if ! "$py" -c 'import open_clip' 2>/dev/null && compgen -G "$carry/wheels/*.whl" >/dev/null; then
  step install-wheels "$py" -m pip install -q --no-deps --no-index --target "$out/pylib" \
    "$carry"/wheels/*.whl
  export PYTHONPATH=$out/pylib${PYTHONPATH:+:$PYTHONPATH}
fi

jobs=$(nproc)
step configure cmake --preset cuda -DCLIPSCALE_PYTHON="$py" "${extra_cmake[@]}"
step build cmake --build build-cuda -j "$jobs"
step list-gpu-tests ctest --test-dir build-cuda -N -L gpu
# Every gpu-labelled test; without a GPU ctest reports them as skipped (and
# scripts/test.sh's skip list says why).
step gpu-tests ctest --test-dir build-cuda -L gpu --output-on-failure -j 1
if [ "$have_gpu" = 1 ]; then
  step gpu-bench "$py" bench/gpu_bench.py --clipscale build-cuda/bin/clipscale \
    --loss-bench build-cuda/bench/gpu_loss_bench --out "$out/bench"
  grep '^gpu_bench:' "$log_dir/gpu-bench.log" >>"$summary"
else
  # The benchmarks start and say that there is nothing to measure (exit 77).
  nothing_measured() {
    "$@"
    [ $? -eq 77 ]
  }
  step gpu-bench-without-gpu nothing_measured "$py" bench/gpu_bench.py \
    --clipscale build-cuda/bin/clipscale --loss-bench build-cuda/bench/gpu_loss_bench \
    --out "$out/bench"
  step gpu-loss-bench-without-gpu nothing_measured build-cuda/bench/gpu_loss_bench
  echo "no CUDA device: the GPU tests skipped and no GPU benchmark ran" >>"$summary"
fi
grep -E "tests passed|Skipped|Failed|\*\*\*" "$log_dir/gpu-tests.log" >>"$summary" 2>/dev/null
echo "--- $summary"
cat "$summary"
exit "$step_status"

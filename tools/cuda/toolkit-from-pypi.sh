#!/bin/bash
# Builds imagegate for CUDA on a machine with no GPU and no CUDA install
# (a CI runner, a laptop): NVIDIA's PyPI wheels give nvcc, the headers and
# the libraries to link against; libcuda.so, which only a driver install
# has, is replaced at link time by a stub exporting the driver API names
# cudarc binds. The binary then needs the real libraries where it runs
# (a driver, and cuBLAS/cuRAND/cudart 13 on LD_LIBRARY_PATH).
#
#   tools/cuda/toolkit-from-pypi.sh /opt/cuda-pypi      # once
#   source /opt/cuda-pypi/env.sh
#   cargo build --release --features cuda
#
# CUDA 13.0 by default (CUDA_SERIES=13.0); CUDA_COMPUTE_CAP (default 90,
# Hopper) picks what candle's kernels are compiled for, since there is no
# GPU to ask. Used to build the binaries measured on an H200 in
# docs/benchmarks.md.
set -euo pipefail
prefix=${1:?usage: $0 PREFIX}
series=${CUDA_SERIES:-13.0}
mkdir -p "$prefix/wheels"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$prefix/wheels" \
  "nvidia-cuda-nvcc==$series.*" "nvidia-cuda-runtime==$series.*" "nvidia-cuda-crt==$series.*" "nvidia-nvvm==$series.*" \
  "nvidia-cuda-cccl==$series.*" "nvidia-cuda-nvrtc==$series.*" "nvidia-cublas==$series.*" nvidia-curand
for w in "$prefix"/wheels/*.whl; do python3 -m zipfile -e "$w" "$prefix/site"; done
home=$(dirname "$(dirname "$(find "$prefix/site" -path '*/bin/nvcc' | head -1)")")
chmod +x "$home"/bin/* "$home"/nvvm/bin/*
# The linker looks for unversioned names; the wheels ship sonames only.
for lib in cublas cublasLt curand nvrtc cudart; do
  so=$(ls "$home"/lib/lib$lib.so.* | grep -v alt | head -1)
  ln -sf "$(basename "$so")" "$home/lib/lib$lib.so"
done
# The driver API stub: every cu* function cudarc's bindings name.
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
cudarc=$(ls -d "$registry"/*/cudarc-* 2>/dev/null | sort -V | tail -1)
[ -n "$cudarc" ] || { echo "run 'cargo fetch' first: cudarc's sources name the driver functions" >&2; exit 1; }
grep -ohE "pub unsafe fn cu[A-Za-z0-9_]+\(" "$cudarc/src/driver/sys/mod.rs" | sed -E 's/pub unsafe fn (.*)\(/int \1(void){return 999;}/' | sort -u > "$prefix/libcuda-stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/libcuda.so" "$prefix/libcuda-stub.c"
cat > "$prefix/env.sh" <<ENV
export CUDA_HOME=$home
export PATH=$home/bin:\$PATH
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
ENV
"$home/bin/nvcc" --version | tail -1
echo "source $prefix/env.sh, then cargo build --features cuda"

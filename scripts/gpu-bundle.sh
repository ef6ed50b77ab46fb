#!/usr/bin/env bash
# gpu-bundle.sh — packs the GPU test and benchmark programs, built here, with
# the Debian libraries they link (oneDNN, OpenBLAS/LAPACKE, GLib, jansson, ZeroMQ,
# the CUDA runtime) into build/gpu-bundle.tar.xz, for a GPU machine that has
# CUDA, cuDNN and PyTorch but none of maad's Debian build dependencies and no
# network to install them (the lent H200 of this project).  scripts/gpu-check.sh
# unpacks it there when it cannot build.  Left out on purpose: glibc (the GPU
# machine's own is used; gpu-check.sh checks it is new enough), libstdc++ and
# libgcc_s (the system's, newer, also serve cuDNN), and cuDNN itself, which is
# over a gigabyte: gpu-check.sh finds the GPU machine's (CUDA or PyTorch's).
set -eu
cd "$(dirname "$0")/.."
PROGS="build/tests/test_cuda build/tests/test_cudnn_plan build/tests/test_worker build/tests/helper_golden
       build/bench_cuda"
make -j"$(nproc)" $PROGS >/dev/null
[ -n "$(nm -C build/tests/test_cuda | grep -m1 cudnnCreate)" ] ||
    { echo "gpu-bundle: this build has no cuda backend (no nvcc in \$CUDA?)" >&2; exit 1; }
stage=build/gpu-stage
rm -rf "$stage"
mkdir -p "$stage/build/tests" "$stage/build/gpu-lib"
for p in $PROGS; do cp "$p" "$stage/$p"; done
# Everything the programs load, but glibc, the C++ runtime, cuDNN and the driver.
ldd $PROGS | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
    grep -Ev '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libcudnn[a-z_]*|libcuda)\.so' |
    while read -r lib; do cp -L "$lib" "$stage/build/gpu-lib/"; done
glibc=$(ldd --version | awk 'NR == 1 { print $NF }')
echo "$glibc" >"$stage/build/gpu-lib/GLIBC"
tar -C "$stage" -cJf build/gpu-bundle.tar.xz build
rm -rf "$stage"
echo "build/gpu-bundle.tar.xz: $(du -h build/gpu-bundle.tar.xz | cut -f1) ($PROGS and" \
     "$(tar -tJf build/gpu-bundle.tar.xz | grep -c 'gpu-lib/.*\.so') libraries; needs glibc >= $glibc)"

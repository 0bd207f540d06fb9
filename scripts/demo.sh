#!/bin/sh
# `make run`: the demo a newcomer sees. Each step says what it shows.
set -eu
cd "$(dirname "$0")/.."
BIN=${XENO_BIN:-$PWD/bin}
KERNEL_PKG=linux-image-6.1.0-56-cloud-amd64-unsigned
KERNEL_VER=6.1.192-2
echo "== fetching the default kernel $KERNEL_PKG=$KERNEL_VER into the kernel store"
"$BIN/xeno" kernel fetch "$KERNEL_PKG=$KERNEL_VER"
echo "== inspecting it"
"$BIN/xeno" kernel inspect 6.1.0-56-cloud-amd64

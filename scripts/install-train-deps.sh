#!/usr/bin/env bash
# Debian packages for training the bundled model (tools/train/): PyTorch, Pillow, NumPy, and
# OpenBLAS, which Debian's PyTorch picks up through the BLAS alternatives (about 15x faster
# matrix products on CPU than the reference BLAS it falls back to). Not needed to build, run or
# test the node: the trained model and its goldens are committed.
set -euo pipefail
pkgs=()
for p in python3-torch python3-pil python3-numpy libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "install-train-deps: present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-train-deps: installing ${pkgs[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}"

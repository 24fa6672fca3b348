#!/usr/bin/env bash
# System packages the native build needs (Debian/Ubuntu): a C++17 compiler, CMake, nlohmann-json
# (JSON parsing in the engine), libjpeg-turbo (native JPEG decoding), doctest (native tests) and
# OpenBLAS (the CPU backend's matrix products; loaded at run time, the engine's own kernel is used
# where it is absent). Installs only what is missing; non-interactive (CI).
set -euo pipefail
pkgs=()
command -v cmake >/dev/null || pkgs+=(cmake)
command -v g++ >/dev/null || pkgs+=(g++)
[ -f /usr/include/nlohmann/json.hpp ] || pkgs+=(nlohmann-json3-dev)
[ -f /usr/include/doctest/doctest.h ] || pkgs+=(doctest-dev)
[ -f /usr/include/jpeglib.h ] || pkgs+=(libjpeg-dev)
# the pthread build, as Debian's PyTorch uses; the engine runs it single-threaded in its own pool
/sbin/ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0' || pkgs+=(libopenblas0-pthread)
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "install-deps: system packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${pkgs[*]}"
# env inside sudo: sudo resets the environment, so DEBIAN_FRONTEND must be passed through it
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"

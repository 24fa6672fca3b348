#!/usr/bin/env bash
# System packages the native build needs (Debian/Ubuntu): a C++17 compiler, CMake, nlohmann-json
# (JSON parsing in the engine), libjpeg-turbo (native JPEG decoding) and doctest (native tests). Installs only what is missing.
set -euo pipefail
pkgs=()
command -v cmake >/dev/null || pkgs+=(cmake)
command -v g++ >/dev/null || pkgs+=(g++)
[ -f /usr/include/nlohmann/json.hpp ] || pkgs+=(nlohmann-json3-dev)
[ -f /usr/include/doctest/doctest.h ] || pkgs+=(doctest-dev)
[ -f /usr/include/jpeglib.h ] || pkgs+=(libjpeg-dev)
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "install-deps: system packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${pkgs[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}"

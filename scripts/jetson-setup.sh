#!/usr/bin/env bash
# Jetson Orin with JetPack 6 (L4T R36, Ubuntu 22.04, CUDA 12): checks the platform, builds the
# node with the CUDA backend for sm_87 only, and sets the power mode. Run from the repository.
#
#   scripts/jetson-setup.sh            check, build, set MAXN power mode and lock the clocks
#   scripts/jetson-setup.sh --check    only report what is there and what is missing
#   scripts/jetson-setup.sh --dry-run  print the commands it would run (works on any machine)
#   POWER_MODE=<n> scripts/jetson-setup.sh   another nvpmodel mode (`nvpmodel -p --verbose` lists them)
#
# Node.js is not in JetPack: install Node.js >= 20.19 first (README, Jetson). ROS 2 Humble is the
# distribution for Ubuntu 22.04; source it before running this script to build the ROS 2 package too.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=run
case "${1:-}" in
  --check) mode=check ;;
  --dry-run) mode=dry ;;
  "") ;;
  *) echo "usage: $0 [--check|--dry-run]" >&2; exit 2 ;;
esac
power_mode="${POWER_MODE:-0}"   # 0 is MAXN on AGX Orin and Orin NX/Nano (JetPack 6)

problems=0
note() { echo "jetson-setup: $*"; }
need() { note "MISSING: $*"; problems=$((problems + 1)); }

if [ -r /etc/nv_tegra_release ]; then
  note "L4T: $(head -n1 /etc/nv_tegra_release)"
  grep -q "R36" /etc/nv_tegra_release || need "JetPack 6 (L4T R36); this is another release"
else
  [ "$mode" = dry ] || need "not a Jetson (no /etc/nv_tegra_release)"
fi
if command -v node >/dev/null 2>&1; then
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
    && note "Node.js $(node --version)" || need "Node.js >= 20.19 (found $(node --version))"
else
  need "Node.js >= 20.19 (README, Jetson: NodeSource's nodejs package for arm64)"
fi
nvcc_bin="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
if [ -x "$nvcc_bin" ]; then note "CUDA: $("$nvcc_bin" --version | tail -n1)"; else need "nvcc (JetPack's cuda-toolkit: sudo apt-get install nvidia-jetpack)"; fi
[ -n "${ROS_DISTRO:-}" ] && note "ROS 2: $ROS_DISTRO (the ROS 2 package is built too)" || note "ROS 2 not sourced: the node is built, the ROS 2 package is not (source /opt/ros/humble/setup.bash first)"

if [ "$mode" = check ]; then
  [ "$problems" -eq 0 ] && note "ready" || note "$problems thing(s) missing"
  exit $(( problems > 0 ))
fi
if [ "$mode" = run ] && [ "$problems" -gt 0 ]; then
  note "stopping: $problems thing(s) missing (see above)"
  exit 1
fi

run() {
  echo "+ $(printf '%q ' "$@")"
  [ "$mode" = dry ] || "$@"
}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# The CUDA toolkit is not on PATH by default on JetPack.
export PATH="/usr/local/cuda/bin:$PATH"
run scripts/install-deps.sh
run npm ci
# sm_87 only: the Orin GPU; one architecture instead of the default two compiles in about half the time
run env VLA_CUDA=ON VLA_CUDA_ARCHITECTURES=87 npm run build
run npm run test:models
# Power: the mode with every core and the highest clocks, then the clocks held at their maximum
# (jetson_clocks lasts until reboot). Measure latency only after this.
run $sudo nvpmodel -m "$power_mode"
run $sudo jetson_clocks
run node bin/autoprune-ros.js infer --model assets/models/drive-deep --backend cuda --json --instruction "follow the road" \
  --image front=assets/sample/front.jpg front_left=assets/sample/front_left.jpg front_right=assets/sample/front_right.jpg
note "done: ros2 launch autoprune_ros autoprune_ros.launch.py config:=\$(ros2 pkg prefix autoprune_ros)/share/autoprune_ros/configs/jetson.yaml"

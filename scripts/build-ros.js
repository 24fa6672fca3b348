#!/usr/bin/env node
// On a machine with ROS 2 sourced: builds rclnodejs's native part (install scripts are off in
// .npmrc), builds our message package (msg/) with colcon, generates rclnodejs's message bindings
// with it on the path, then builds the ament package ros/ (autoprune_ros), which installs the
// node npm run build made (dist/, the addon, production node_modules with those bindings), its
// launch files and configs into build/ros-install. Without ROS 2 it says so and does nothing: the
// CLI, the engine, replay and the tests do not need it.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
if (!process.env.ROS_DISTRO) {
  process.stdout.write('build:ros: ROS 2 is not sourced; the ROS 2 node is not built (everything else is)\n');
  process.exit(0);
}
const install = path.join(root, 'build', 'ros-install');
const env = { ...process.env, AMENT_PREFIX_PATH: [install, process.env.AMENT_PREFIX_PATH].filter(Boolean).join(':') };
function run(cmd, args) {
  process.stdout.write(`build:ros: ${cmd} ${args.join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, env });
  if (r.status !== 0) {
    process.stderr.write(`VLA_E_ADDON_MISSING: build:ros: '${cmd} ${args.join(' ')}' failed (${r.status ?? r.signal})\n`);
    process.exit(1);
  }
}
run('npm', ['rebuild', 'rclnodejs', '--ignore-scripts=false']);
const colcon = (pkg) => run('colcon', ['build', '--base-paths', 'msg', 'ros', '--packages-select', pkg, '--build-base', 'build/colcon', '--install-base', install, '--merge-install']);
colcon('autoprune_ros_msgs');
run('npx', ['--no-install', 'generate-ros-messages']);
colcon('autoprune_ros');
process.stdout.write(`build:ros: done; source ${install}/setup.bash, then: ros2 launch autoprune_ros autoprune_ros.launch.py\n`);

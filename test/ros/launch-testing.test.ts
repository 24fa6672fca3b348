/**
 * Runs the launch_testing test (test/ros/test_node_launch.py) where ROS 2 is sourced; elsewhere
 * it is skipped with the reason printed. Where ROS 2 is sourced it needs the package built and
 * sourced (npm run build, source build/ros-install/setup.bash) and says so when it is not.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { root } from '../addon/helpers.js';

describe('launch_testing (ros)', function () {
  this.timeout(600_000);
  it('the installed package launches, plans and shuts down cleanly (test/ros/test_node_launch.py)', function () {
    if (!process.env.ROS_DISTRO) {
      process.stdout.write('      skipped: ROS 2 is not sourced (ROS_DISTRO is unset); launch_test test/ros/test_node_launch.py runs where it is\n');
      this.skip();
    }
    const prefix = spawnSync('ros2', ['pkg', 'prefix', 'autoprune_ros'], { encoding: 'utf8' });
    assert.equal(prefix.status, 0, `autoprune_ros is not on the ROS path: run npm run build, then source build/ros-install/setup.bash (${prefix.stderr})`);
    const r = spawnSync('launch_test', [path.join(root, 'test', 'ros', 'test_node_launch.py')], { encoding: 'utf8', cwd: root });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  });
});

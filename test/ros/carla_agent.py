#!/usr/bin/env python3
"""Loads carla/autoprune_agent.py without CARLA and prints, as JSON, what the leaderboard reads
from it: the entry point, sensors(), the track setup() sets and get_ros_entrypoint().

The leaderboard is not installed here: `leaderboard.autoagents.ros2_agent.ROS2Agent` and
`leaderboard.autoagents.autonomous_agent.Track` are replaced by minimal classes with the names
and members the agent uses (as in carla-simulator/leaderboard master: Track's values, a ROS2Agent
base whose constructor the leaderboard calls with host, port, debug).
"""
import enum
import importlib.util
import json
import sys
import types


def install_leaderboard_doubles():
    class Track(enum.Enum):
        SENSORS = 'SENSORS'
        MAP = 'MAP'
        SENSORS_QUALIFIER = 'SENSORS_QUALIFIER'
        MAP_QUALIFIER = 'MAP_QUALIFIER'

    class ROS2Agent:
        ROS_VERSION = 2

        def __init__(self, carla_host=None, carla_port=None, debug=False):
            self.track = Track.SENSORS

        @staticmethod
        def get_ros_version():
            return 2

    pkgs = {name: types.ModuleType(name) for name in ('leaderboard', 'leaderboard.autoagents', 'leaderboard.autoagents.autonomous_agent', 'leaderboard.autoagents.ros2_agent')}
    pkgs['leaderboard.autoagents.autonomous_agent'].Track = Track
    pkgs['leaderboard.autoagents.ros2_agent'].ROS2Agent = ROS2Agent
    sys.modules.update(pkgs)
    return Track


def main(path):
    Track = install_leaderboard_doubles()
    spec = importlib.util.spec_from_file_location('agent_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, module.get_entry_point())
    agent = cls('localhost', 2000, False)
    agent.setup(None)
    print(json.dumps({
        'entry_point': module.get_entry_point(),
        'ros_version': cls.get_ros_version(),
        'track': agent.track.value if isinstance(agent.track, Track) else str(agent.track),
        'sensors': agent.sensors(),
        'ros_entrypoint': agent.get_ros_entrypoint(),
        'intrinsics': list(module.camera_intrinsics()),
    }))


if __name__ == '__main__':
    main(sys.argv[1])

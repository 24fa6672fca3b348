"""Starts the autoprune_ros lifecycle node (Node.js) with a model, a parameter file and remaps.

    ros2 launch launch/autoprune_ros.launch.py model_path:=/models/vla config:=configs/default.yaml \
        front_topic:=/camera/front/image_raw front_left_topic:=/camera/left/image_raw \
        front_right_topic:=/camera/right/image_raw instruction_topic:=/vla/instruction

Needs a sourced ROS 2 (Humble or Jazzy) and `npm run build` run after sourcing it.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration

ROOT = os.environ.get('AUTOPRUNE_ROS_ROOT', os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate_launch_description():
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument('config', default_value=os.path.join(ROOT, 'configs', 'default.yaml'),
                              description='ROS 2 parameter file (see configs/autoprune_ros.schema.json)'),
        DeclareLaunchArgument('model_path', default_value=os.path.join(ROOT, 'assets', 'models', 'drive'),
                              description='model directory'),
        DeclareLaunchArgument('front_topic', default_value='~/input/front/image'),
        DeclareLaunchArgument('front_left_topic', default_value='~/input/front_left/image'),
        DeclareLaunchArgument('front_right_topic', default_value='~/input/front_right/image'),
        DeclareLaunchArgument('instruction_topic', default_value='~/input/instruction'),
        DeclareLaunchArgument('log_level', default_value='info'),
        ExecuteProcess(
            cmd=['node', os.path.join(ROOT, 'dist', 'ros', 'main.js'), '--ros-args',
                 '-r', '__node:=autoprune_ros',
                 '--params-file', arg('config'),
                 '-p', ['model_path:=', arg('model_path')],
                 '-r', ['~/input/front/image:=', arg('front_topic')],
                 '-r', ['~/input/front_left/image:=', arg('front_left_topic')],
                 '-r', ['~/input/front_right/image:=', arg('front_right_topic')],
                 '-r', ['~/input/instruction:=', arg('instruction_topic')]],
            additional_env={'LOG_LEVEL': arg('log_level')},
            output='screen'),
    ])

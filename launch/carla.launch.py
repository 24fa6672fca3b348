"""autoprune_ros beside the CARLA ROS bridge: cameras /carla/<role>/<sensor>/image (bgra8),
outputs remapped for the bridge's local planner.

    ros2 launch launch/carla.launch.py model_path:=/models/vla role_name:=ego_vehicle
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration

ROOT = os.environ.get('AUTOPRUNE_ROS_ROOT', os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate_launch_description():
    arg = LaunchConfiguration
    role = arg('role_name')
    return LaunchDescription([
        DeclareLaunchArgument('config', default_value=os.path.join(ROOT, 'configs', 'carla.yaml')),
        DeclareLaunchArgument('model_path', default_value=os.path.join(ROOT, 'assets', 'models', 'drive')),
        DeclareLaunchArgument('role_name', default_value='ego_vehicle'),
        DeclareLaunchArgument('front_sensor', default_value='rgb_front'),
        DeclareLaunchArgument('left_sensor', default_value='rgb_left'),
        DeclareLaunchArgument('right_sensor', default_value='rgb_right'),
        ExecuteProcess(
            cmd=['node', os.path.join(ROOT, 'dist', 'ros', 'main.js'), '--ros-args',
                 '-r', '__node:=autoprune_ros',
                 '--params-file', arg('config'),
                 '-p', ['model_path:=', arg('model_path')],
                 '-p', ['output_frame:=', role],
                 '-p', ['camera_topics:=[/carla/', role, '/', arg('front_sensor'), '/image,/carla/', role, '/',
                        arg('left_sensor'), '/image,/carla/', role, '/', arg('right_sensor'), '/image]'],
                 '-p', ['instruction_topic:=/carla/', role, '/instruction'],
                 '-r', ['~/output/path:=/carla/', role, '/waypoints']],
            output='screen'),
    ])

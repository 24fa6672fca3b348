"""The ROS side of the CARLA leaderboard 2.x agent (carla/autoprune_agent.py names this file):
the VLA node on the agent's three cameras and carla_control_node, which turns the leaderboard's
route into instructions and the plans into carla_msgs/CarlaEgoVehicleControl. Both run on the
simulation clock. The leaderboard runs `ros2 launch autoprune_ros carla_leaderboard.launch.py
camera_prefix:=/carla/hero [model_path:=...] [config:=...]`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    arg = LaunchConfiguration
    share = FindPackageShare('autoprune_ros')
    prefix = arg('camera_prefix')
    return LaunchDescription([
        DeclareLaunchArgument('config', default_value=PathJoinSubstitution([share, 'configs', 'carla_leaderboard.yaml'])),
        DeclareLaunchArgument('control_config', default_value=PathJoinSubstitution([share, 'configs', 'carla_control.yaml'])),
        DeclareLaunchArgument('model_path', default_value=PathJoinSubstitution([share, 'assets', 'models', 'drive-deep'])),
        DeclareLaunchArgument('camera_prefix', default_value='/carla/hero', description='the leaderboard publishes /carla/hero/<sensor id>'),
        LifecycleNode(
            package='autoprune_ros', executable='autoprune_ros_node',
            name='autoprune_ros', namespace='', output='screen',
            ros_arguments=['--params-file', arg('config'),
                           '-p', ['model_path:=', arg('model_path')],
                           '-p', 'use_sim_time:=true'],
            remappings=[('~/input/front/image', [prefix, '/front/image']),
                        ('~/input/front_left/image', [prefix, '/front_left/image']),
                        ('~/input/front_right/image', [prefix, '/front_right/image'])]),
        Node(
            package='autoprune_ros', executable='carla_control_node',
            name='carla_control', namespace='', output='screen',
            ros_arguments=['--params-file', arg('control_config'), '-p', 'use_sim_time:=true']),
    ])

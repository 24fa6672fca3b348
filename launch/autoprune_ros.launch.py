"""The autoprune_ros lifecycle node with a parameter file, the model and topic remaps.

    ros2 launch autoprune_ros autoprune_ros.launch.py \
        front_topic:=/camera/front/image_raw front_left_topic:=/camera/left/image_raw \
        front_right_topic:=/camera/right/image_raw instruction_topic:=/vla/instruction

Every argument has a default (`ros2 launch autoprune_ros autoprune_ros.launch.py --show-args`).
autostart:=false leaves the node unconfigured for a lifecycle manager. Parameters go on the
command line (`ros_arguments`), not as a dict: launch_ros writes dict parameters under the node's
full name, which rclnodejs does not read (it reads `/**` and the bare node name).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    arg = LaunchConfiguration
    share = FindPackageShare('autoprune_ros')
    return LaunchDescription([
        DeclareLaunchArgument('config', default_value=PathJoinSubstitution([share, 'configs', 'default.yaml']),
                              description='ROS 2 parameter file (configs/autoprune_ros.schema.json)'),
        DeclareLaunchArgument('model_path', default_value=PathJoinSubstitution([share, 'assets', 'models', 'drive-deep']),
                              description='model directory (config.json, model.safetensors, tokenizer.json)'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate at start; false: wait for a lifecycle manager'),
        DeclareLaunchArgument('use_sim_time', default_value='false', description='take time from /clock'),
        DeclareLaunchArgument('node_name', default_value='autoprune_ros'),
        DeclareLaunchArgument('namespace', default_value=''),
        DeclareLaunchArgument('front_topic', default_value='~/input/front/image'),
        DeclareLaunchArgument('front_left_topic', default_value='~/input/front_left/image'),
        DeclareLaunchArgument('front_right_topic', default_value='~/input/front_right/image'),
        DeclareLaunchArgument('instruction_topic', default_value='~/input/instruction'),
        DeclareLaunchArgument('log_level', default_value='info', description='pino level of the node'),
        LifecycleNode(
            package='autoprune_ros', executable='autoprune_ros_node',
            name=arg('node_name'), namespace=arg('namespace'), output='screen',
            ros_arguments=['--params-file', arg('config'),
                           '-p', ['model_path:=', arg('model_path')],
                           '-p', ['autostart:=', arg('autostart')],
                           '-p', ['use_sim_time:=', arg('use_sim_time')]],
            remappings=[('~/input/front/image', arg('front_topic')),
                        ('~/input/front_left/image', arg('front_left_topic')),
                        ('~/input/front_right/image', arg('front_right_topic')),
                        ('~/input/instruction', arg('instruction_topic'))],
            additional_env={'LOG_LEVEL': arg('log_level')}),
    ])

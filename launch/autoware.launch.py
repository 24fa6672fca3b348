"""autoprune_ros as a planner for Autoware: its autoware_planning_msgs/Trajectory goes to the
topic the Autoware controller (trajectory_follower) reads, and its odometry is Autoware's
localization output (the ego speed enters the prompt).

    ros2 launch autoprune_ros autoware.launch.py \
        front_topic:=/sensing/camera/camera0/image_rect_color \
        front_left_topic:=/sensing/camera/camera1/image_rect_color \
        front_right_topic:=/sensing/camera/camera2/image_rect_color

The trajectory is in base_link at the camera stamp (output_frame); Autoware's controller expects
the map frame: see the README, Autoware.
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
        DeclareLaunchArgument('config', default_value=PathJoinSubstitution([share, 'configs', 'autoware.yaml'])),
        DeclareLaunchArgument('model_path', default_value=PathJoinSubstitution([share, 'assets', 'models', 'drive-deep'])),
        DeclareLaunchArgument('use_sim_time', default_value='false'),
        DeclareLaunchArgument('front_topic', default_value='/sensing/camera/front/image_rect_color'),
        DeclareLaunchArgument('front_left_topic', default_value='/sensing/camera/front_left/image_rect_color'),
        DeclareLaunchArgument('front_right_topic', default_value='/sensing/camera/front_right/image_rect_color'),
        DeclareLaunchArgument('trajectory_topic', default_value='/planning/scenario_planning/trajectory'),
        DeclareLaunchArgument('kinematic_state_topic', default_value='/localization/kinematic_state'),
        LifecycleNode(
            package='autoprune_ros', executable='autoprune_ros_node',
            name='autoprune_ros', namespace='planning', output='screen',
            ros_arguments=['--params-file', arg('config'),
                           '-p', ['model_path:=', arg('model_path')],
                           '-p', ['use_sim_time:=', arg('use_sim_time')]],
            remappings=[('~/input/front/image', arg('front_topic')),
                        ('~/input/front_left/image', arg('front_left_topic')),
                        ('~/input/front_right/image', arg('front_right_topic')),
                        ('~/input/odometry', arg('kinematic_state_topic')),
                        ('~/output/autoware_trajectory', arg('trajectory_topic'))]),
    ])

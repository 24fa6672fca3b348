"""autoprune_ros beside the CARLA ROS bridge (carla_ros_bridge with an ego vehicle whose RGB
cameras are <role>/<sensor>): the node's camera inputs are remapped to the bridge's
/carla/<role>/<sensor>/image topics (bgra8), its path to /carla/<role>/waypoints for the bridge's
carla_ad_agent local planner, and it runs on the bridge's /clock (synchronous mode).

    ros2 launch autoprune_ros carla.launch.py role_name:=ego_vehicle \
        front_sensor:=rgb_front left_sensor:=rgb_left right_sensor:=rgb_right
    ros2 topic pub --once -w 0 --qos-durability transient_local /carla/ego_vehicle/instruction \
        std_msgs/msg/String "{data: 'turn left at the next intersection'}"
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    arg = LaunchConfiguration
    share = FindPackageShare('autoprune_ros')
    role = arg('role_name')
    return LaunchDescription([
        DeclareLaunchArgument('config', default_value=PathJoinSubstitution([share, 'configs', 'carla.yaml'])),
        DeclareLaunchArgument('model_path', default_value=PathJoinSubstitution([share, 'assets', 'models', 'drive-deep'])),
        DeclareLaunchArgument('use_sim_time', default_value='true', description='the bridge publishes /clock'),
        DeclareLaunchArgument('role_name', default_value='ego_vehicle'),
        DeclareLaunchArgument('front_sensor', default_value='rgb_front'),
        DeclareLaunchArgument('left_sensor', default_value='rgb_left'),
        DeclareLaunchArgument('right_sensor', default_value='rgb_right'),
        LifecycleNode(
            package='autoprune_ros', executable='autoprune_ros_node',
            name='autoprune_ros', namespace='', output='screen',
            ros_arguments=['--params-file', arg('config'),
                           '-p', ['model_path:=', arg('model_path')],
                           '-p', ['output_frame:=', role],
                           '-p', ['use_sim_time:=', arg('use_sim_time')]],
            remappings=[('~/input/front/image', ['/carla/', role, '/', arg('front_sensor'), '/image']),
                        ('~/input/front_left/image', ['/carla/', role, '/', arg('left_sensor'), '/image']),
                        ('~/input/front_right/image', ['/carla/', role, '/', arg('right_sensor'), '/image']),
                        ('~/input/instruction', ['/carla/', role, '/instruction']),
                        ('~/output/path', ['/carla/', role, '/waypoints'])]),
    ])

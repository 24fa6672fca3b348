"""autoprune_ros as a CARLA leaderboard 2.x agent, through the leaderboard's ROS 2 interface.

    $LEADERBOARD_ROOT/scripts/run_evaluation.sh with
    TEAM_AGENT=$(ros2 pkg prefix autoprune_ros)/share/autoprune_ros/carla/autoprune_agent.py

The leaderboard (leaderboard/autoagents/ros2_agent.py, ros_base_agent.py) starts the CARLA ROS
bridge in passive synchronous mode, spawns the sensors declared here through it (topics
/carla/hero/<sensor id>...), then runs `ros2 launch <package> <launch_file> <k>:=<v>` with what
get_ros_entrypoint returns, waits for std_msgs/Bool on /carla/hero/status, publishes the route on
/carla/hero/global_plan (carla_msgs/CarlaRoute) and applies each
carla_msgs/CarlaEgoVehicleControl on /carla/hero/vehicle_control_cmd whose stamp is the tick's
simulation time. The launch file (launch/carla_leaderboard.launch.py) runs the VLA node on the
three cameras and carla_control_node, which turns the route into instructions and the plans into
controls.

The cameras are the bundled model's (assets/models/drive): front, front_left and front_right,
70 degree horizontal field of view, 320 x 180, 1.6 m above the ground, yawed 0, -55 and +55
degrees (CARLA's yaw is right-positive; the model's camera yaws are left-positive 0, 55, -55),
pitched 3.6 degrees down so the horizon sits where the training renderer puts it (principal point
at 0.42 of the height), on the rear axle, which is base_link for the plans.

The leaderboard instantiates this class before setup() (the constructor launches the ROS side),
so the model and configuration come from the environment, not from the agent config file:
AUTOPRUNE_MODEL (default: the package's bundled model) and AUTOPRUNE_CONFIG.
"""
import math
import os

from leaderboard.autoagents.autonomous_agent import Track
from leaderboard.autoagents.ros2_agent import ROS2Agent


def get_entry_point():
    return 'AutopruneAgent'


# Training camera of the bundled model (src/sample/render.ts): fov, size, height, principal row.
FOV_DEG = 70.0
WIDTH, HEIGHT = 320, 180
CAMERA_HEIGHT_M = 1.6
PRINCIPAL_ROW = 0.42
# The Lincoln MKZ 2020 (the leaderboard's hero): its rear axle is about half the wheelbase
# (2.875 m) behind the vehicle's origin.
REAR_AXLE_X_M = -1.44
# model camera name -> CARLA yaw (deg, right-positive)
CAMERAS = (('front', 0.0), ('front_left', -55.0), ('front_right', 55.0))


def camera_pitch_deg():
    """Down-pitch that puts the horizon at PRINCIPAL_ROW of the image (CARLA: negative is down)."""
    focal_px = (WIDTH / 2.0) / math.tan(math.radians(FOV_DEG) / 2.0)
    return -math.degrees(math.atan((0.5 - PRINCIPAL_ROW) * HEIGHT / focal_px))


def camera_intrinsics():
    """fx, fy, cx, cy of the declared cameras (square pixels, as CARLA's camera has)."""
    focal_px = (WIDTH / 2.0) / math.tan(math.radians(FOV_DEG) / 2.0)
    return focal_px, focal_px, WIDTH / 2.0, HEIGHT / 2.0


class AutopruneAgent(ROS2Agent):

    def setup(self, path_to_conf_file):
        self.track = Track.SENSORS

    def sensors(self):
        pitch = camera_pitch_deg()
        cameras = [{
            'type': 'sensor.camera.rgb', 'id': name,
            'x': REAR_AXLE_X_M, 'y': 0.0, 'z': CAMERA_HEIGHT_M,
            'roll': 0.0, 'pitch': pitch, 'yaw': yaw,
            'width': WIDTH, 'height': HEIGHT, 'fov': FOV_DEG,
        } for name, yaw in CAMERAS]
        return cameras + [
            {'type': 'sensor.speedometer', 'id': 'speed'},
            {'type': 'sensor.other.imu', 'id': 'imu', 'x': REAR_AXLE_X_M, 'y': 0.0, 'z': 0.0,
             'roll': 0.0, 'pitch': 0.0, 'yaw': 0.0},
            {'type': 'sensor.other.gnss', 'id': 'gnss', 'x': REAR_AXLE_X_M, 'y': 0.0, 'z': 0.0},
        ]

    def get_ros_entrypoint(self):
        parameters = {'camera_prefix': '/carla/hero'}
        if os.environ.get('AUTOPRUNE_MODEL'):
            parameters['model_path'] = os.environ['AUTOPRUNE_MODEL']
        if os.environ.get('AUTOPRUNE_CONFIG'):
            parameters['config'] = os.environ['AUTOPRUNE_CONFIG']
        return {
            'package': 'autoprune_ros',
            'launch_file': 'carla_leaderboard.launch.py',
            'parameters': parameters,
        }

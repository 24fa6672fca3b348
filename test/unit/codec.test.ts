import assert from 'node:assert/strict';

import { MessageCodec } from '../../src/msgs/codec.js';
import { ErrorCodes, VlaError } from '../../src/util/errors.js';

const codec = new MessageCodec();

function rejects(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof VlaError && err.code === code);
}

describe('CDR codec', () => {
  const header = { stamp: { sec: 1700000000, nanosec: 123456789 }, frame_id: 'camera_front' };

  it('round-trips sensor_msgs/msg/Image with the CDR layout ROS 2 uses', () => {
    const img = { header, height: 2, width: 3, encoding: 'bgr8', is_bigendian: 0, step: 9, data: Uint8Array.from({ length: 18 }, (_, i) => i) };
    const bytes = codec.encode('sensor_msgs/msg/Image', img);
    // little-endian CDR encapsulation header, then stamp.sec
    assert.deepEqual([...bytes.subarray(0, 4)], [0, 1, 0, 0]);
    assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getInt32(4, true), 1700000000);
    const back = codec.decode<typeof img>('sensor_msgs/msg/Image', bytes);
    assert.equal(back.encoding, 'bgr8');
    assert.equal(back.header.frame_id, 'camera_front');
    assert.deepEqual([...back.data], [...img.data]);
  });

  it('round-trips standard and own messages', () => {
    const s = codec.decode<{ data: string }>('std_msgs/msg/String', codec.encode('std_msgs/msg/String', { data: 'turn left at the next intersection' }));
    assert.equal(s.data, 'turn left at the next intersection');
    const pose = { position: { x: 1, y: 2, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } };
    const path = { header, poses: [{ header, pose }, { header, pose }] };
    assert.deepEqual(codec.decode('nav_msgs/msg/Path', codec.encode('nav_msgs/msg/Path', path)), path);
    const traj = {
      header,
      waypoints: [{ time_from_start: { sec: 0, nanosec: 500000000 }, x_m: 3.5, y_m: 0.25, yaw_rad: 0, has_yaw: false }],
      instruction: 'keep lane',
      model: 'tiny',
    };
    assert.deepEqual(codec.decode('autoprune_ros_msgs/msg/Trajectory', codec.encode('autoprune_ros_msgs/msg/Trajectory', traj)), traj);
    const text = codec.definitionText('autoprune_ros_msgs/msg/Trajectory');
    assert.match(text, /^std_msgs\/Header header/m);
    assert.match(text, /^MSG: autoprune_ros_msgs\/Waypoint$/m);
    assert.match(text, /^MSG: builtin_interfaces\/Time$/m);
    const metrics = codec.definitionText('autoprune_ros_msgs/msg/Metrics');
    assert.match(metrics, /uint32\[\] visual_tokens_kept/);
  });

  it('gives coded errors for unknown types and bad bytes', () => {
    rejects(() => codec.encode('sensor_msgs/msg/NoSuchThing', {}), ErrorCodes.MSG_TYPE);
    rejects(() => codec.decode('not a type', new Uint8Array(8)), ErrorCodes.MSG_TYPE);
    const bytes = codec.encode('sensor_msgs/msg/Image', { header, height: 1, width: 1, encoding: 'rgb8', is_bigendian: 0, step: 3, data: new Uint8Array(3) });
    for (let cut = 0; cut < bytes.length; cut++) rejects(() => codec.decode('sensor_msgs/msg/Image', bytes.subarray(0, cut)), ErrorCodes.CDR);
    // an absurd sequence length is an error, not an allocation
    const evil = Uint8Array.from(bytes);
    new DataView(evil.buffer).setUint32(bytes.length - 3 - 4, 0x7fffffff, true);
    rejects(() => codec.decode('sensor_msgs/msg/Image', evil), ErrorCodes.CDR);
  });

  it('predecode: the next decode of the same bytes and type takes the result once; failures are left to decode', () => {
    const c = new MessageCodec();
    const bytes = c.encode('std_msgs/msg/String', { data: 'left at the lights' });
    c.predecode('std_msgs/msg/String', bytes);
    // The bytes change after predecode (they never do in replay): decode gives what predecode read.
    const at = Buffer.from(bytes).indexOf('left');
    bytes[at] = 'r'.charCodeAt(0);
    const first = c.decode<{ data: string }>('std_msgs/msg/String', bytes);
    assert.equal(first.data, 'left at the lights');
    // Taken once: the next decode reads the bytes again.
    const second = c.decode<{ data: string }>('std_msgs/msg/String', bytes);
    assert.equal(second.data, 'reft at the lights');
    // Predecoded as one type, decoded as another: the other type's decoding.
    const img = c.encode('sensor_msgs/msg/Image', { header, height: 1, width: 1, encoding: 'rgb8', is_bigendian: 0, step: 3, data: new Uint8Array(3) });
    c.predecode('std_msgs/msg/String', img);
    assert.equal(c.decode<{ width: number }>('sensor_msgs/msg/Image', img).width, 1);
    // Bytes that do not decode: predecode is silent, decode throws as before.
    const cut = img.subarray(0, 10);
    c.predecode('sensor_msgs/msg/Image', cut);
    rejects(() => c.decode('sensor_msgs/msg/Image', cut), ErrorCodes.CDR);
    // Codecs share compiled definitions but not their predecoded messages.
    const other = new MessageCodec();
    c.predecode('std_msgs/msg/String', bytes);
    assert.notEqual(other.decode('std_msgs/msg/String', bytes), c.decode('std_msgs/msg/String', bytes));
  });

  it('encodes messages larger than the first buffer, and the same again after it grew', () => {
    const c = new MessageCodec();
    const big = { header, height: 1, width: 100, encoding: 'rgb8', is_bigendian: 0, step: 300, data: Uint8Array.from({ length: 300 }, (_, i) => i & 255) };
    const small = { ...big, width: 1, step: 3, data: new Uint8Array([1, 2, 3]) };
    const a = c.encode('sensor_msgs/msg/Image', small);
    const b = c.encode('sensor_msgs/msg/Image', big);
    const a2 = c.encode('sensor_msgs/msg/Image', small);
    assert.deepEqual([...a2], [...a]);
    assert.deepEqual(c.decode<{ data: Uint8Array }>('sensor_msgs/msg/Image', b).data, big.data);
    assert.deepEqual(c.decode<{ data: Uint8Array }>('sensor_msgs/msg/Image', a2).data, small.data);
  });
});

import type { NodeParams } from '../src/pipeline/node.js';

/** Node parameters for tests: image topics /cam/<camera><suffix>, a 10 ms slop, 200 ms max age. */
export function nodeParams(cameras: string[], topicSuffix: string, over: Partial<NodeParams> = {}): NodeParams {
  return {
    cameras: cameras.map((camera) => ({ camera, topic: `/cam/${camera}${topicSuffix}`, type: 'sensor_msgs/msg/Image' as const })),
    instructionTopic: '~/input/instruction',
    defaultInstruction: 'follow the road',
    outputFrame: 'base_link',
    slopMs: 10,
    maxAgeMs: 200,
    missingCamera: 'wait',
    tickMs: 5,
    futureToleranceMs: 50,
    latencyWarnMs: 1000,
    maxInstructionChars: 512,
    modelName: 'test',
    ...over,
  };
}

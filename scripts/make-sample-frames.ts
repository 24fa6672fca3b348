// Renders the bundled sample frames (assets/sample/*.jpg), committed so the quick start needs
// no generation step: a curved road with an intersection ahead and two vehicles, seen by the
// front, front-left and front-right cameras.
//   npx tsx scripts/make-sample-frames.ts
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';

import { renderView, type CameraName } from '../src/sample/render.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'assets', 'sample');
await mkdir(out, { recursive: true });
const cams: CameraName[] = ['front', 'front_left', 'front_right'];
for (const camera of cams) {
  const v = renderView({
    camera,
    width: 320,
    height: 180,
    curvature: 0.004,
    intersection: 35,
    vehicles: [
      { distance: 18, lane: 0, color: [180, 30, 30] },
      { distance: 9, lane: -1, color: [30, 60, 170] },
    ],
    light: 1,
    seed: 7,
  });
  const jpg = await sharp(Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength), { raw: { width: v.width, height: v.height, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
  await writeFile(path.join(out, `${camera}.jpg`), jpg);
}
await writeFile(path.join(out, 'instruction.txt'), 'turn left at the next intersection\n');
process.stdout.write(`sample frames written to ${out}\n`);

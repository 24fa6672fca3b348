import sharp from 'sharp';

import { ErrorCodes, VlaError } from '../util/errors.js';
import type { NativeView, PixelEncoding } from './addon-types.js';

/** A raw camera frame as sensor_msgs/msg/Image carries it. */
export interface RawImage {
  kind?: 'raw';
  data: Uint8Array;
  width: number;
  height: number;
  /** Bytes per row; defaults to width * channels. */
  step?: number;
  encoding: PixelEncoding;
}

/** A compressed frame (sensor_msgs/msg/CompressedImage): JPEG or PNG bytes. */
export interface CompressedImage {
  kind: 'compressed';
  data: Uint8Array;
  /** Informational; the decoder sniffs the bytes. */
  format?: string;
}

export type ImageInput = RawImage | CompressedImage;

export const CHANNELS: Record<PixelEncoding, number> = { rgb8: 3, bgr8: 3, rgba8: 4, bgra8: 4, mono8: 1 };

const MAX_PIXELS = 8192 * 8192;

/**
 * Decodes JPEG/PNG bytes to rgb8 off the event loop (sharp runs on libuv's thread pool).
 * Corrupt or unsupported data is VLA_E_IMAGE_DECODE naming `label`.
 */
export async function decodeCompressed(data: Uint8Array, label: string): Promise<NativeView> {
  if (data.byteLength === 0) throw new VlaError(ErrorCodes.IMAGE_DECODE, `${label}: empty image data`);
  try {
    const { data: pixels, info } = await sharp(data, { failOn: 'error', limitInputPixels: MAX_PIXELS })
      .toColourspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data: new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength), width: info.width, height: info.height, step: info.width * 3, encoding: 'rgb8' };
  } catch (err) {
    throw new VlaError(ErrorCodes.IMAGE_DECODE, `${label}: cannot decode image (${(err as Error).message})`, { label }, { cause: err });
  }
}

/** Checks a raw frame's geometry in TypeScript so the error names the camera (the addon re-checks). */
export function rawView(img: RawImage, label: string): NativeView {
  const ch = CHANNELS[img.encoding];
  if (ch === undefined) {
    throw new VlaError(ErrorCodes.IMAGE, `${label}: encoding '${String(img.encoding)}' is not supported (${Object.keys(CHANNELS).join(', ')})`);
  }
  const { width, height } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || width > 16384 || height > 16384) {
    throw new VlaError(ErrorCodes.IMAGE, `${label}: width and height must be integers in 1..16384, got ${width}x${height}`);
  }
  const step = img.step ?? width * ch;
  if (!Number.isInteger(step) || step < width * ch) {
    throw new VlaError(ErrorCodes.IMAGE, `${label}: step ${step} is less than width * channels = ${width * ch}`);
  }
  const need = step * (height - 1) + width * ch;
  if (img.data.byteLength < need) {
    throw new VlaError(ErrorCodes.IMAGE, `${label}: buffer holds ${img.data.byteLength} bytes, ${width}x${height} ${img.encoding} with step ${step} needs ${need}`);
  }
  return { data: img.data, width, height, step, encoding: img.encoding };
}

/** JPEG's start-of-image marker. */
export function isJpeg(data: Uint8Array): boolean {
  return data.byteLength >= 3 && data[0] === 0xff && data[1] === 0xd8 && data[2] === 0xff;
}

/**
 * A view for the addon. With `nativeJpeg`, JPEG bytes go to the addon as they are and are decoded
 * on its worker thread into native memory (no decoded frame in the JS heap: at camera rates those
 * buffers force full garbage collections); PNG and builds without libjpeg decode here with sharp.
 */
export async function toNativeView(img: ImageInput, label: string, nativeJpeg = false): Promise<NativeView> {
  if (img.kind !== 'compressed') return rawView(img, label);
  if (nativeJpeg && isJpeg(img.data)) return { data: img.data, width: 0, height: 0, step: 0, encoding: 'jpeg', label };
  return decodeCompressed(img.data, label);
}

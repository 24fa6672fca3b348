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

export const CHANNELS: Readonly<Record<PixelEncoding, number>> = Object.freeze({ rgb8: 3, bgr8: 3, rgba8: 4, bgra8: 4, mono8: 1 });

/**
 * Channels of a raw encoding the engine takes, or undefined: an own key of CHANNELS only (a
 * message's encoding named `constructor` or `__proto__` must not find Object.prototype's).
 */
export function channelsOf(encoding: unknown): number | undefined {
  return typeof encoding === 'string' && Object.hasOwn(CHANNELS, encoding) ? CHANNELS[encoding as PixelEncoding] : undefined;
}

/** Pixels of a compressed frame (8K UHD is 33 Mpx); a bigger one is refused before it is decoded. */
export const MAX_COMPRESSED_PIXELS = 8192 * 8192;
/** Wall time one compressed frame may take to decode (sharp's timeout), s. */
export const DECODE_TIMEOUT_S = 5;

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** PNG's signature. */
export function isPng(data: Uint8Array): boolean {
  return data.byteLength >= 8 && PNG_MAGIC.every((b, i) => data[i] === b);
}

/** What some bytes look like, for the error of a format cameras do not send. */
function sniffName(data: Uint8Array): string {
  const head = new TextDecoder('latin1').decode(data.subarray(0, 64)).trimStart().toLowerCase();
  if (head.startsWith('<?xml') || head.startsWith('<svg') || head.startsWith('<!doctype')) return 'SVG/XML text';
  if (head.startsWith('gif8')) return 'GIF';
  if (head.startsWith('riff') && head.slice(8, 12) === 'webp') return 'WebP';
  if (head.startsWith('ii*\0') || head.startsWith('mm\0*')) return 'TIFF';
  if (head.startsWith('%pdf')) return 'PDF';
  if (head.startsWith('bm')) return 'BMP';
  return `unknown data (first bytes ${Buffer.from(data.subarray(0, 8)).toString('hex')})`;
}

/**
 * Decodes JPEG/PNG bytes to rgb8 off the event loop (sharp runs on libuv's thread pool). Only
 * the formats a camera sends are accepted, by their magic bytes and by the decoder's own reading
 * of the header: sharp also renders SVG, PDF, TIFF, GIF..., and an SVG can keep it busy for
 * minutes. Pixels and decode time are bounded. Corrupt or unsupported data is VLA_E_IMAGE_DECODE
 * naming `label`; a decode over DECODE_TIMEOUT_S is VLA_E_TIMEOUT.
 */
export async function decodeCompressed(data: Uint8Array, label: string): Promise<NativeView> {
  if (data.byteLength === 0) throw new VlaError(ErrorCodes.IMAGE_DECODE, `${label}: empty image data`);
  if (!isJpeg(data) && !isPng(data)) throw new VlaError(ErrorCodes.IMAGE_DECODE, `${label}: not JPEG or PNG (${sniffName(data)}); a compressed frame must be JPEG or PNG`, { label });
  let stage = 'read the header of';
  try {
    const input = sharp(data, { failOn: 'error', limitInputPixels: MAX_COMPRESSED_PIXELS });
    const meta = await input.metadata();
    if (meta.format !== 'jpeg' && meta.format !== 'png') throw new Error(`the decoder reads ${String(meta.format)}, not JPEG or PNG`);
    stage = 'decode';
    const { data: pixels, info } = await input.timeout({ seconds: DECODE_TIMEOUT_S }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data: new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength), width: info.width, height: info.height, step: info.width * 3, encoding: 'rgb8' };
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    if (/timeout/i.test(msg)) throw new VlaError(ErrorCodes.TIMEOUT, `${label}: decoding took longer than ${DECODE_TIMEOUT_S} s (${msg})`, { label }, { cause: err });
    throw new VlaError(ErrorCodes.IMAGE_DECODE, `${label}: cannot ${stage} image (${msg})`, { label }, { cause: err });
  }
}

/** Checks a raw frame's geometry in TypeScript so the error names the camera (the addon re-checks). */
export function rawView(img: RawImage, label: string): NativeView {
  const ch = channelsOf(img.encoding);
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

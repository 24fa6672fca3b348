/**
 * Reading files the project did not write (bags, images, parameter files, model files): only
 * regular files are opened (a FIFO blocks the open and every read, a device never ends, a
 * directory fails with a bare EISDIR), without blocking, with a size bound, and errors name the
 * file. A bag's own files must also resolve inside its directory (resolveInside).
 */
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCodes, VlaError, type ErrorCode } from './errors.js';

// O_NONBLOCK: were a FIFO swapped in between the stat and the open, the open still returns at
// once (and fstat refuses it); it changes nothing for regular files.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** What a non-regular file is, in words. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

export interface FileErrorCodes {
  /** The file does not exist (default VLA_E_IO). */
  missing?: ErrorCode;
  /** Anything else: not a regular file, unreadable, too large (default VLA_E_IO). */
  other?: ErrorCode;
}

function ioError(file: string, err: unknown, codes: FileErrorCodes): VlaError {
  if (err instanceof VlaError) return err;
  const errno = (err as NodeJS.ErrnoException).code;
  const code = errno === 'ENOENT' ? (codes.missing ?? ErrorCodes.IO) : (codes.other ?? ErrorCodes.IO);
  const why = errno === 'ENOENT' ? 'no such file' : errno === 'EACCES' ? 'permission denied' : errno === 'ELOOP' ? 'too many levels of symbolic links' : (err as Error).message;
  return new VlaError(code, `${file}: ${why}`, { file, offset: 0 }, { cause: err });
}

function notRegular(file: string, st: Stats, codes: FileErrorCodes): VlaError {
  return new VlaError(codes.other ?? ErrorCodes.IO, `${file}: is ${kindOf(st)}, not a regular file`, { file, offset: 0 });
}

function tooLarge(file: string, size: number, maxBytes: number, codes: FileErrorCodes): VlaError {
  return new VlaError(codes.other ?? ErrorCodes.IO, `${file}: ${size} bytes is over the ${maxBytes}-byte limit for this file`, { file, offset: 0 });
}

/**
 * Opens a regular file for reading; anything else (directory, FIFO, device, socket) is refused
 * before it is opened. Returns the handle and the size fstat gives.
 */
export async function openRegular(file: string, codes: FileErrorCodes = {}): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle | undefined;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw notRegular(file, st, codes);
    fh = await open(file, OPEN_FLAGS);
    const st2 = await fh.stat();
    if (!st2.isFile()) throw notRegular(file, st2, codes);
    return { fh, size: st2.size };
  } catch (err) {
    await fh?.close().catch(() => undefined);
    throw ioError(file, err, codes);
  }
}

/** The whole of a regular file of at most maxBytes. */
export async function readRegularFile(file: string, maxBytes: number, codes: FileErrorCodes = {}): Promise<Buffer> {
  const { fh, size } = await openRegular(file, codes);
  try {
    if (size > maxBytes) throw tooLarge(file, size, maxBytes, codes);
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, size - got, got);
      if (bytesRead === 0) break; // shrank while read
      got += bytesRead;
    }
    return got === size ? buf : buf.subarray(0, got);
  } catch (err) {
    throw ioError(file, err, codes);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** readRegularFile for callers that must stay synchronous (parameter files). */
export function readRegularFileSync(file: string, maxBytes: number, codes: FileErrorCodes = {}): Buffer {
  let fd: number | undefined;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw notRegular(file, st, codes);
    fd = openSync(file, OPEN_FLAGS);
    const st2 = fstatSync(fd);
    if (!st2.isFile()) throw notRegular(file, st2, codes);
    if (st2.size > maxBytes) throw tooLarge(file, st2.size, maxBytes, codes);
    const buf = Buffer.allocUnsafe(st2.size);
    let got = 0;
    while (got < buf.byteLength) {
      const n = readSync(fd, buf, got, buf.byteLength - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === buf.byteLength ? buf : buf.subarray(0, got);
  } catch (err) {
    throw ioError(file, err, codes);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Whether `p` is `dir` or below it (both already absolute and normalised). */
export function isInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * The real path of `name`, a file a directory's own metadata names, when it lies inside that
 * directory: absolute names and names that climb out (`../`) are refused without touching the
 * file, and so are symbolic links that lead out of it. `dirReal` is the directory's real path.
 * A name that does not exist resolves to its would-be path (the caller reports it missing).
 */
export async function resolveInside(dirReal: string, name: string, code: ErrorCode, what: string): Promise<string> {
  if (name.includes('\0')) throw new VlaError(code, `${what}: '${name.replace(/\0/g, '\\0')}' is not a file name`, { file: dirReal, offset: 0 });
  if (path.isAbsolute(name)) throw new VlaError(code, `${what}: '${name}' is an absolute path; a bag's files must be inside its directory ${dirReal}`, { file: dirReal, offset: 0 });
  const lexical = path.resolve(dirReal, name);
  if (!isInside(dirReal, lexical) || lexical === dirReal) throw new VlaError(code, `${what}: '${name}' is outside the bag directory ${dirReal}`, { file: dirReal, offset: 0 });
  let real: string;
  try {
    real = await realpath(lexical);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return lexical;
    throw ioError(lexical, err, { other: code });
  }
  if (!isInside(dirReal, real)) throw new VlaError(code, `${what}: '${name}' leads to ${real} (a link), outside the bag directory ${dirReal}`, { file: lexical, offset: 0 });
  return real;
}

/** realpathSync that leaves a missing path as it is (resolved). */
export function realpathOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

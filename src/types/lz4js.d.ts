// lz4js ships no types: the one function the bag writer uses (LZ4 frame format, as MCAP's lz4 chunks are).
declare module 'lz4js' {
  export function compress(data: Uint8Array, maxSize?: number): Uint8Array;
  export function decompress(data: Uint8Array, maxSize?: number): Uint8Array;
}

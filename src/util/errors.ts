/**
 * Coded errors. Every failure the project reports carries a stable `code` (documented in
 * docs/errors.md); native codes (VLA_E_*) pass through unchanged from the addon.
 */
export const ErrorCodes = {
  // native engine (mirrors native/include/vla/status.h)
  IO: 'VLA_E_IO',
  CONFIG: 'VLA_E_CONFIG',
  WEIGHTS_FORMAT: 'VLA_E_WEIGHTS_FORMAT',
  WEIGHTS_TRUNCATED: 'VLA_E_WEIGHTS_TRUNCATED',
  TENSOR_MISSING: 'VLA_E_TENSOR_MISSING',
  TENSOR_SHAPE: 'VLA_E_TENSOR_SHAPE',
  DTYPE: 'VLA_E_DTYPE',
  INPUT: 'VLA_E_INPUT',
  IMAGE: 'VLA_E_IMAGE',
  BUSY: 'VLA_E_BUSY',
  DISPOSED: 'VLA_E_DISPOSED',
  BACKEND: 'VLA_E_BACKEND',
  OOM: 'VLA_E_OOM',
  INTERNAL: 'VLA_E_INTERNAL',
  // TypeScript side
  ADDON_MISSING: 'VLA_E_ADDON_MISSING',
  TOKENIZER: 'VLA_E_TOKENIZER',
  IMAGE_DECODE: 'VLA_E_IMAGE_DECODE',
  ARGS: 'VLA_E_ARGS',
  MSG_TYPE: 'VLA_E_MSG_TYPE',
  CDR: 'VLA_E_CDR',
  PARAMS: 'VLA_E_PARAMS',
  OUTPUT: 'VLA_E_OUTPUT',
  TIMEOUT: 'VLA_E_TIMEOUT',
  NO_FRAMES: 'VLA_E_NO_FRAMES',
  CALIBRATION: 'VLA_E_CALIBRATION',
  // bags, replay and traces
  BAG: 'VLA_E_BAG',
  BAG_MAGIC: 'VLA_E_BAG_MAGIC',
  BAG_TRUNCATED: 'VLA_E_BAG_TRUNCATED',
  BAG_CRC: 'VLA_E_BAG_CRC',
  BAG_MISSING_FILE: 'VLA_E_BAG_MISSING_FILE',
  BAG_LIMIT: 'VLA_E_BAG_LIMIT',
  TRACE: 'VLA_E_TRACE',
  // closed-loop simulation
  SCENARIO: 'VLA_E_SCENARIO',
  SIM_CONFIG: 'VLA_E_SIM_CONFIG',
  SHARD: 'VLA_E_SHARD',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

const KNOWN = new Set<string>(Object.values(ErrorCodes));

export class VlaError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VlaError';
    this.code = code;
    this.details = details;
  }

  /** Wraps anything thrown (native errors carry `code`) into a VlaError. */
  static from(err: unknown, fallback: ErrorCode = ErrorCodes.INTERNAL): VlaError {
    if (err instanceof VlaError) return err;
    if (err instanceof Error) {
      const code = (err as { code?: unknown }).code;
      const known = typeof code === 'string' && KNOWN.has(code) ? (code as ErrorCode) : fallback;
      return new VlaError(known, err.message, undefined, { cause: err });
    }
    return new VlaError(fallback, String(err));
  }
}

export function isVlaError(err: unknown, code?: ErrorCode): err is VlaError {
  return err instanceof VlaError && (code === undefined || err.code === code);
}

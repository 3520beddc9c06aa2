/**
 * Stable error codes. Callers and logs match on `err.code`, never on the message text.
 */
export const ErrorCodes = {
  /** An option or config value is out of range or of the wrong type. */
  INVALID_OPTION: 'CALLMOOD_ERR_INVALID_OPTION',
  /** Samples that are NaN or infinite, or a buffer whose length does not fit its sample format. */
  INVALID_AUDIO: 'CALLMOOD_ERR_INVALID_AUDIO',
  /** Input that holds no audio at all. */
  EMPTY_AUDIO: 'CALLMOOD_ERR_EMPTY_AUDIO',
  /** A sample rate the component does not handle. */
  UNSUPPORTED_RATE: 'CALLMOOD_ERR_UNSUPPORTED_RATE',
  /** A channel count the component does not handle. */
  UNSUPPORTED_CHANNELS: 'CALLMOOD_ERR_UNSUPPORTED_CHANNELS',
  /** A file or stream format (container, codec, bit depth) that is not supported. */
  UNSUPPORTED_FORMAT: 'CALLMOOD_ERR_UNSUPPORTED_FORMAT',
  /** A file that claims a supported format but is damaged or cut short. */
  CORRUPT_FILE: 'CALLMOOD_ERR_CORRUPT_FILE',
  /** A file that cannot be opened or read. */
  FILE_READ: 'CALLMOOD_ERR_FILE_READ',
  /** A stream used after `close()`. */
  CLOSED: 'CALLMOOD_ERR_CLOSED',
  /** A message that breaks the Twilio Media Streams protocol: bad JSON, unknown event, wrong order, missing field. */
  PROTOCOL: 'CALLMOOD_ERR_PROTOCOL',
  /** A media stream whose format is not 8 kHz mono μ-law (`audio/x-mulaw`). */
  MEDIA_FORMAT: 'CALLMOOD_ERR_MEDIA_FORMAT',
  /** A request whose X-Twilio-Signature is missing or wrong. */
  SIGNATURE: 'CALLMOOD_ERR_SIGNATURE',
  /** Running the model on a window failed. */
  INFERENCE: 'CALLMOOD_ERR_INFERENCE',
  /** A policy file that cannot be read or breaks the policy schema; the message names the rule and the field. */
  INVALID_POLICY: 'CALLMOOD_ERR_INVALID_POLICY',
  /** Twilio's REST API refused or failed to change a live call (after retries where retrying made sense). */
  CALL_CONTROL: 'CALLMOOD_ERR_CALL_CONTROL',
  /** A bug or an unexpected failure inside callmood; the message says where. */
  INTERNAL: 'CALLMOOD_ERR_INTERNAL',
  /** A requested TF.js backend that cannot be loaded here. */
  BACKEND_UNAVAILABLE: 'CALLMOOD_ERR_BACKEND_UNAVAILABLE',
} as const;

/** One of the stable `CALLMOOD_ERR_*` codes. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/**
 * The one error class callmood throws. `code` is stable; `permanent` says whether retrying the same input can
 * succeed (a corrupt file never will; a file system hiccup might).
 */
export class CallmoodError extends Error {
  /** Stable code, e.g. `CALLMOOD_ERR_INVALID_AUDIO`. */
  readonly code: ErrorCode;
  /** True when retrying with the same input cannot succeed. */
  readonly permanent: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; permanent?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CallmoodError';
    this.code = code;
    this.permanent = options.permanent ?? true;
  }
}

import { z } from 'zod';
import { CallmoodError, ErrorCodes } from '../errors.js';

/**
 * How audio becomes features. A model carries the config it was trained with, and serving computes exactly that.
 * Defaults and their reasons are in src/features/README.md ("Feature defaults, and why").
 */
export interface FeatureConfig {
  /** Sample rate the features are computed at (Hz). Audio at other rates is resampled to it first. */
  sampleRate: number;
  /** Analysis window length in samples (400 = 25 ms at 16 kHz). */
  winLength: number;
  /** Hop between frames in samples (160 = 10 ms at 16 kHz). */
  hop: number;
  /** FFT size: a power of two ≥ winLength; the window is zero-padded at its end. */
  nFft: number;
  /** Window function, symmetric: `hamming` (0.54 − 0.46 cos) or `hann`. */
  window: 'hamming' | 'hann';
  /** Pre-emphasis coefficient a in y[n] = x[n] − a·x[n−1], applied over the whole stream; 0 turns it off. */
  preEmphasis: number;
  /** Number of triangular mel filters (HTK mel scale, unnormalised). */
  nMels: number;
  /** Lowest filter edge (Hz). */
  fMin: number;
  /** Highest filter edge (Hz), at most sampleRate / 2. */
  fMax: number;
  /** Mel energies are clamped to at least this before the natural log. */
  logFloor: number;
  /** `mfcc`: DCT-II (orthonormal) of the log-mel energies; `logmel`: the log-mel energies themselves. */
  kind: 'mfcc' | 'logmel';
  /** Number of cepstral coefficients kept (kind `mfcc`), at most nMels. */
  nMfcc: number;
  /** Sinusoidal lifter parameter L (HTK/Kaldi: c_i · (1 + L/2 · sin(πi/L))); 0 turns it off. */
  lifter: number;
  /** 0: static features only; 1: append deltas; 2: append deltas and delta-deltas. */
  deltaOrder: number;
  /** Half-width N of the regression window for deltas (frames t−N … t+N, edges replicated). */
  deltaWindow: number;
}

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

const schema = z
  .object({
    sampleRate: z.number().int().min(4000).max(192000),
    winLength: z.number().int().min(16).max(16384),
    hop: z.number().int().min(1).max(16384),
    nFft: z.number().int().min(16).max(16384).refine(isPowerOfTwo, 'must be a power of two'),
    window: z.enum(['hamming', 'hann']),
    preEmphasis: z.number().min(0).lt(1),
    nMels: z.number().int().min(1).max(256),
    fMin: z.number().min(0),
    fMax: z.number().positive(),
    logFloor: z.number().positive().max(1),
    kind: z.enum(['mfcc', 'logmel']),
    nMfcc: z.number().int().min(1).max(256),
    lifter: z.number().min(0).max(1000),
    deltaOrder: z.number().int().min(0).max(2),
    deltaWindow: z.number().int().min(1).max(10),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.nFft < c.winLength) ctx.addIssue({ code: 'custom', path: ['nFft'], message: `must be ≥ winLength (${c.winLength})` });
    if (c.fMax > c.sampleRate / 2) ctx.addIssue({ code: 'custom', path: ['fMax'], message: `must be ≤ sampleRate / 2 (${c.sampleRate / 2})` });
    if (c.fMin >= c.fMax) ctx.addIssue({ code: 'custom', path: ['fMin'], message: `must be < fMax (${c.fMax})` });
    if (c.kind === 'mfcc' && c.nMfcc > c.nMels) ctx.addIssue({ code: 'custom', path: ['nMfcc'], message: `must be ≤ nMels (${c.nMels})` });
  });

/**
 * The shipped default. 16 kHz, 25 ms / 10 ms, 40 mel filters over the telephone band 300–3400 Hz so that wideband
 * training audio and phone audio fill the same filters, 40 coefficients as in the seed.
 */
export const DEFAULT_FEATURE_CONFIG: Readonly<FeatureConfig> = Object.freeze({
  sampleRate: 16000,
  winLength: 400,
  hop: 160,
  nFft: 512,
  window: 'hamming',
  preEmphasis: 0.97,
  nMels: 40,
  fMin: 300,
  fMax: 3400,
  logFloor: 1e-10,
  kind: 'mfcc',
  nMfcc: 40,
  lifter: 0,
  deltaOrder: 0,
  deltaWindow: 2,
});

/**
 * The same analysis at the telephone's own rate: 8 kHz, 25 ms / 10 ms (200 / 80 samples), a 256-point FFT (the
 * same 31.25 Hz bin spacing as 512 points at 16 kHz), and the same 40 filters over 300–3400 Hz, all of which lie
 * below 4 kHz. Live audio from a phone line is 8 kHz: features at 8 kHz need no resampling and half the FFT work.
 */
export const NARROWBAND_FEATURE_CONFIG: Readonly<FeatureConfig> = Object.freeze({
  ...DEFAULT_FEATURE_CONFIG,
  sampleRate: 8000,
  winLength: 200,
  hop: 80,
  nFft: 256,
});

/** Feature configs a model can be trained with, by sample rate: 8000 (narrowband) or 16000 (the default). */
export const FEATURE_CONFIGS_BY_RATE: Readonly<Record<string, Readonly<FeatureConfig>>> = Object.freeze({
  '8000': NARROWBAND_FEATURE_CONFIG,
  '16000': DEFAULT_FEATURE_CONFIG,
});

/** Merges `partial` over the default and validates the result; the error names the field and what is allowed. */
export function resolveFeatureConfig(partial: Partial<FeatureConfig> = {}): Readonly<FeatureConfig> {
  const merged = { ...DEFAULT_FEATURE_CONFIG, ...partial };
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) =>
        i.code === 'unrecognized_keys'
          ? `unknown field(s) ${i.keys.join(', ')}; allowed: ${Object.keys(DEFAULT_FEATURE_CONFIG).join(', ')}`
          : `${i.path.join('.') || '(config)'}: ${i.message}`,
      )
      .join('; ');
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `invalid feature config: ${issues}`);
  }
  return Object.freeze(parsed.data);
}

/** Values per output frame: static dims × (1 + deltaOrder). */
export function featureDims(c: FeatureConfig): number {
  return (c.kind === 'mfcc' ? c.nMfcc : c.nMels) * (1 + c.deltaOrder);
}

/** Number of frames a clip of `samples` samples yields (only complete windows; no padding at the ends). */
export function frameCount(c: FeatureConfig, samples: number): number {
  return samples < c.winLength ? 0 : Math.floor((samples - c.winLength) / c.hop) + 1;
}

/** Canonical key of a config: two configs compute the same features exactly when their keys are equal. */
export function featureConfigKey(c: FeatureConfig): string {
  const keys = Object.keys(DEFAULT_FEATURE_CONFIG).sort() as (keyof FeatureConfig)[];
  return JSON.stringify(keys.map((k) => [k, c[k]]));
}

/**
 * Chooses the TF.js backend once per process: `tensorflow` (`@tensorflow/tfjs-node`, an optional dependency whose
 * install downloads libtensorflow and so may be absent) if it loads, else `wasm` (`@tensorflow/tfjs-backend-wasm`,
 * whose .wasm files ship inside its npm package), else `cpu`.
 *
 * TF.js backends are process-global state, and tfjs-node brings its own `tf` namespace: callers must use the `tf`
 * returned here for everything, so that tensors, models and kernels all live in one tfjs-core.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type * as tfjs from '@tensorflow/tfjs';
import { CallmoodError, ErrorCodes } from '../errors.js';
import { registerWasmKernels } from './kernels/index.js';

/** A TF.js backend callmood can run on. */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

/** The `@tensorflow/tfjs` namespace type; tfjs-node's namespace is a superset of it. */
export type Tf = typeof tfjs;

/** Options for {@link initBackend}. */
export interface BackendOptions {
  /** 'auto' (default) tries tensorflow, then wasm, then cpu; any other value forces that backend or throws. */
  prefer?: 'auto' | BackendName;
  /**
   * Threads for the wasm backend. Integer ≥ 1; only 1 is honoured in Node, and a larger value is noted in
   * `reason`. Measured with TF.js 4.22: it disables the threaded build under Node, forcing it fails (its pthread
   * workers are made from blob: URLs, which worker_threads refuse), and with those shimmed to files the threaded
   * module starts its workers but XNNPACK still reports 1 thread and runs no faster.
   */
  threads?: number;
  /** Receives the one line that says which backend was chosen and why. Default: a line on stderr. */
  log?: (msg: string) => void;
}

/** What {@link initBackend} chose. */
export interface BackendInfo {
  /** The active TF.js backend. */
  name: BackendName;
  /** The tf namespace that backend is registered with: use it, and only it, for tensors and models. */
  tf: Tf;
  /** Why this backend, e.g. "tfjs-node not installed (…); wasm SIMD build, 1 thread". */
  reason: string;
}

const PREFERENCES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;

let pending: Promise<BackendInfo> | undefined;

/**
 * Chooses, initialises and logs the TF.js backend, once: later calls return the same {@link BackendInfo} (a
 * later call that forces a different backend throws, since switching would strand the tensors and models already
 * made). A failed call is not cached, so a later call may try again.
 */
export async function initBackend(opts: BackendOptions = {}): Promise<BackendInfo> {
  const prefer = opts.prefer ?? 'auto';
  if (!(PREFERENCES as readonly string[]).includes(prefer)) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `backend.prefer must be one of ${PREFERENCES.join(', ')}; got ${String(prefer)}`);
  }
  const threads = opts.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, `backend.threads must be an integer ≥ 1; got ${String(opts.threads)}`);
  }
  if (pending === undefined) {
    const log = opts.log ?? ((msg: string) => void process.stderr.write(`${msg}\n`));
    const attempt = choose(prefer, threads).then((info) => {
      log(`callmood: TF.js backend '${info.name}' (${info.reason})`);
      return Object.freeze(info);
    });
    pending = attempt;
    attempt.catch(() => {
      if (pending === attempt) pending = undefined;
    });
    return attempt;
  }
  const info = await pending;
  if (prefer !== 'auto' && prefer !== info.name) {
    throw new CallmoodError(
      ErrorCodes.INVALID_OPTION,
      `backend.prefer '${prefer}': the TF.js backend was already initialised as '${info.name}' in this process and cannot be switched`,
    );
  }
  return info;
}

async function choose(prefer: (typeof PREFERENCES)[number], threads: number): Promise<BackendInfo> {
  const notes: string[] = [];
  if (prefer === 'auto' || prefer === 'tensorflow') {
    const r = await tryTensorflow();
    if ('info' in r) return r.info;
    if (prefer === 'tensorflow') {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `backend.prefer 'tensorflow' is not available: ${r.why}`, { cause: r.cause });
    }
    notes.push(r.why);
  }
  const tf = await loadTfjs();
  if (prefer === 'auto' || prefer === 'wasm') {
    const r = await tryWasm(tf, threads);
    if ('info' in r) {
      r.info.reason = [...notes, r.info.reason].join('; ');
      return r.info;
    }
    if (prefer === 'wasm') {
      throw new CallmoodError(ErrorCodes.INVALID_OPTION, `backend.prefer 'wasm' is not available: ${r.why}`, { cause: r.cause });
    }
    notes.push(r.why);
  }
  if (!(await tf.setBackend('cpu'))) {
    throw new CallmoodError(ErrorCodes.INVALID_OPTION, 'the TF.js cpu backend failed to initialise', { permanent: true });
  }
  await tf.ready();
  return { name: 'cpu', tf, reason: [...notes, prefer === 'cpu' ? 'cpu requested' : 'cpu fallback'].join('; ') };
}

type Attempt = { info: BackendInfo } | { why: string; cause?: unknown };

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0] ?? msg;
}

async function tryTensorflow(): Promise<Attempt> {
  // A variable specifier keeps TypeScript from requiring the optional package's types at build time.
  const spec = '@tensorflow/tfjs-node';
  let mod: { default?: unknown } & Record<string, unknown>;
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    const code = (e as { code?: string }).code;
    const missing = (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && firstLine(e).includes(spec);
    return { why: `tfjs-node ${missing ? 'not installed' : 'failed to load'}: ${firstLine(e)}`, cause: e };
  }
  // tfjs-node is CommonJS: its module.exports (the ESM default) is the whole tf namespace, tfjs re-exports included.
  const tf = (typeof (mod.default as Tf | undefined)?.setBackend === 'function' ? mod.default : mod) as Tf;
  try {
    if (!(await tf.setBackend('tensorflow'))) return { why: 'tfjs-node loaded but its tensorflow backend failed to initialise' };
    await tf.ready();
  } catch (e) {
    return { why: `tfjs-node loaded but its tensorflow backend failed: ${firstLine(e)}`, cause: e };
  }
  return { info: { name: 'tensorflow', tf, reason: `tfjs-node ${(tf.version as Record<string, string | undefined>)['tfjs-node'] ?? ''}`.trim() } };
}

async function loadTfjs(): Promise<Tf> {
  const mod = (await import('@tensorflow/tfjs')) as Tf & { default?: Tf };
  // Under Node's ESM loader this CommonJS package's default export is module.exports; prefer it when present.
  return typeof mod.default?.setBackend === 'function' ? mod.default : mod;
}

async function tryWasm(tf: Tf, threads: number): Promise<Attempt> {
  if (typeof (globalThis as { WebAssembly?: unknown }).WebAssembly !== 'object') return { why: 'WebAssembly is not available' };
  let wasmMod: typeof import('@tensorflow/tfjs-backend-wasm');
  let distDir: string;
  try {
    wasmMod = await import('@tensorflow/tfjs-backend-wasm');
    // The package's main file is dist/tf-backend-wasm.node.js, beside the .wasm binaries.
    distDir = path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'));
  } catch (e) {
    return { why: `tfjs-backend-wasm failed to load: ${firstLine(e)}`, cause: e };
  }
  const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true;
  const binary = path.join(distDir, simd ? 'tfjs-backend-wasm-simd.wasm' : 'tfjs-backend-wasm.wasm');
  if (!existsSync(binary)) return { why: `wasm binary missing: ${binary}` };
  try {
    // Before the first setBackend('wasm'); tf.findBackend would itself start the initialisation.
    wasmMod.setWasmPaths(distDir + path.sep);
    if (!(await tf.setBackend('wasm'))) return { why: 'the wasm backend failed to initialise' };
    await tf.ready();
  } catch (e) {
    return { why: `the wasm backend failed: ${firstLine(e)}`, cause: e };
  }
  const added = registerWasmKernels(tf);
  const parts = [`wasm ${simd ? 'SIMD' : 'plain'} build, 1 thread`];
  if (threads > 1) parts.push(`threads=${threads} ignored: the threaded wasm build cannot run in Node`);
  if (added.length > 0) parts.push(`added kernels: ${added.join(', ')}`);
  return { info: { name: 'wasm', tf, reason: parts.join(', ') } };
}

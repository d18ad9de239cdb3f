/**
 * The shapes that cross the native boundary: what `snapshotCore` takes and what it gives back.
 *
 * The snapshot is the Backtrace report (shared/reference/backtrace-compat.md, section 4) as the
 * engine fills it in; docs/snapshot-format.md is the authority on every field. Fields the engine
 * may leave out are optional here, so code reading a snapshot has to cope with their absence.
 */

/** What to snapshot and how; mirrors `coresnap_snapshot::SnapshotRequest`. */
export interface SnapshotOptions {
  /** A core file. */
  core?: string;
  /** A live process to attach to with ptrace(2). */
  pid?: number;
  /** The crashed executable; the core names it when absent. */
  executable?: string;
  /** Every mapped file (and its `usr/lib/debug` tree) is looked up under this folder. */
  sysroot?: string;
  /** Extra build-id debug trees (`DIR/.build-id/xx/rest.debug`). */
  debugDirs?: string[];
  /** `--kv key:value` attributes, in the object's key order. */
  attributes?: Record<string, string>;
  /** Files attached to the snapshot (`--resource`). */
  resources?: string[];
  /** The process crashed (as opposed to a hang snapshot of a live process). */
  faulted?: boolean;
  /** Extra classifiers to add to the snapshot's own (`--classifier`). */
  classifiers?: string[];
}

/** How a frame was found by the unwinder. */
export type FrameTrust = 'context' | 'cfi' | 'frame-pointer' | 'scan' | (string & {});

/** One frame of a thread's stack, innermost first. */
export interface SnapshotFrame {
  funcName?: string;
  address?: string | number;
  library?: string;
  libraryOffset?: string | number;
  sourcePath?: string;
  line?: number;
  column?: number;
  /** True for a frame the compiler inlined into the next (outer) frame. */
  inlined?: boolean;
  trust?: FrameTrust;
  /** `signal` for a signal trampoline frame. */
  kind?: string;
  registers?: Record<string, string | number>;
}

export interface SnapshotThread {
  name?: string;
  fault?: boolean;
  stack: SnapshotFrame[];
}

export interface SnapshotModule {
  start?: string | number;
  size?: number;
  code_file?: string;
  version?: string;
  debug_file?: string;
  debug_identifier?: string;
  debug_file_exists?: boolean;
}

export interface SnapshotSignal {
  number: number;
  name?: string;
  code?: number;
  codeName?: string;
  address?: string | number;
}

/** The snapshot document, as `snapshotCore` returns it and `ptrace -o` writes it. */
export interface Snapshot {
  uuid: string;
  timestamp: number;
  lang: string;
  langVersion: string;
  agent: string;
  agentVersion: string;
  arch?: { name: string; registers?: Record<string, string> };
  /** A key of `threads`: the crashing thread's tid, as a string. */
  mainThread: string;
  /** Threads keyed by tid (as a string). */
  threads: Record<string, SnapshotThread>;
  modules?: SnapshotModule[];
  signal?: SnapshotSignal;
  classifiers?: string[];
  attributes?: Record<string, string | number | boolean | null>;
  [extra: string]: unknown;
}

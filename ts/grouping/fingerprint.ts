/**
 * Fingerprints: which group a crash belongs to. The caller hands over a parsed report (an SDK's
 * JSON or a ptrace snapshot) and the project's rules; this module picks the faulting thread,
 * normalises its frames (names without addresses or parameters, `module+offset` where no name is
 * known), skips the frames every crash of a kind shares, and hashes the kind of crash with the
 * top `rules.frames` frames that remain (sha256, hex). `explainFingerprint` returns the decision
 * frame by frame (the explain call); `groupReport` gives ingestion the same fingerprint and the
 * `callstack` in one pass, remembering what it worked out per distinct stack.
 *
 * A report that carries its own `fingerprint` (an SDK's choice) keeps it: a 64-hex value as is,
 * anything else hashed so that the column is always sha256 hex.
 */

import { createHash } from 'node:crypto';
import { compile, DEFAULT_GROUPING_RULES, type GroupingRules, parseGroupingRules, type SkipRule } from './rules.js';

export interface ExplainedFrame {
  /** Position in the faulting thread's stack, innermost 0. */
  index: number;
  /** The normalised name the hash uses (or would have used). */
  name: string;
  used: boolean;
  /** Why the frame was used or skipped. */
  reason: string;
}

export interface FingerprintExplanation {
  fingerprint: string;
  /** `sdk`: the report's own fingerprint; `frames`: computed from the stack. */
  source: 'sdk' | 'frames';
  rulesVersion: number;
  /** The thread whose stack was used (its key in `threads`), if any. */
  thread: string | null;
  /** The kind of crash hashed with the frames, and where it came from. */
  kind: string | null;
  kindFrom: string | null;
  frames: ExplainedFrame[];
  /** Exactly what was hashed. */
  hashInput: string;
}

interface CompiledRule {
  rule: SkipRule;
  fn?: RegExp;
  lib?: RegExp;
}

/** Rules ready to apply: compile once per project and rules version. */
export class CompiledGroupingRules {
  readonly skip: CompiledRule[];
  readonly suffixes: RegExp[];
  constructor(
    readonly rules: GroupingRules = DEFAULT_GROUPING_RULES,
    readonly version = 0,
  ) {
    this.skip = rules.skip.map((rule, i) => {
      const c: CompiledRule = { rule };
      if (rule.function !== undefined) c.fn = compile(rule.function, `skip[${i}].function`);
      if (rule.library !== undefined) c.lib = compile(rule.library, `skip[${i}].library`);
      return c;
    });
    this.suffixes = rules.stripSuffixes.map((s, i) => compile(s, `stripSuffixes[${i}]`));
  }

  /** A project's stored rules (`Store.getGroupingRules`), checked and compiled; throws GroupingRulesError. */
  static fromStored(stored: { version: number; rules: unknown }): CompiledGroupingRules {
    return new CompiledGroupingRules(parseGroupingRules(stored.rules), stored.version);
  }

  // Crash streams repeat the same few thousand stacks, and the regular expressions below are most
  // of a report's grouping cost: both verdicts are remembered per distinct input. Bounded, so a
  // stream of generated names cannot grow them without end.
  private readonly names = new Map<string, string>();
  private readonly verdicts = new Map<string, { anywhere: number; top: number }>();
  /** Whole stacks (see `groupReport`): their callstack and the names the fingerprint uses. */
  readonly stacks = new Map<string, WalkedStack>();

  rememberStack(key: string, walked: WalkedStack): void {
    if (this.stacks.size >= STACK_MEMO_LIMIT) this.stacks.clear();
    this.stacks.set(key, walked);
  }

  /** `normaliseFunctionName` with these rules' suffixes, remembered. */
  normalise(raw: string): string {
    let name = this.names.get(raw);
    if (name === undefined) {
      name = normaliseFunctionName(raw, this.suffixes);
      if (this.names.size >= MEMO_LIMIT) this.names.clear();
      this.names.set(raw, name);
    }
    return name;
  }

  /**
   * The skip rule that applies to a frame (its index in `skip`), or -1. Rules are tried in
   * order; a `top` rule only counts while no frame has been used yet.
   */
  skipRule(name: string, library: string, frameKind: unknown, noFrameUsedYet: boolean): number {
    const key = `${name}\u0000${library}\u0000${typeof frameKind === 'string' ? `=${frameKind}` : ''}`;
    let v = this.verdicts.get(key);
    if (v === undefined) {
      v = { anywhere: -1, top: -1 };
      for (let i = 0; i < this.skip.length; i++) {
        const c = this.skip[i]!;
        if (c.rule.frameKind !== undefined && frameKind !== c.rule.frameKind) continue;
        if (c.fn && !c.fn.test(name)) continue;
        if (c.lib && !c.lib.test(library)) continue;
        if (c.rule.where === 'top') {
          if (v.top < 0) v.top = i;
        } else {
          v.anywhere = i;
          break;
        }
      }
      if (this.verdicts.size >= MEMO_LIMIT) this.verdicts.clear();
      this.verdicts.set(key, v);
    }
    if (noFrameUsedYet && v.top >= 0 && (v.anywhere < 0 || v.top < v.anywhere)) return v.top;
    return v.anywhere;
  }
}

/** A stack as grouping saw it, and the fingerprints it made per kind of crash. */
interface WalkedStack {
  callstack: string[];
  used: string[];
  byKind: Map<string, string>;
}

const MEMO_LIMIT = 100_000;
const STACK_MEMO_LIMIT = 20_000;

const DEFAULT_COMPILED = new CompiledGroupingRules();

type Frame = Record<string, unknown>;

/** The thread a crash happened on: the one marked `fault`, else `mainThread`, else the first. */
export function faultingThread(report: Record<string, unknown>): { key: string; stack: Frame[] } | undefined {
  const threads = report.threads;
  if (typeof threads !== 'object' || threads === null || Array.isArray(threads)) return undefined;
  const entries = Object.entries(threads as Record<string, unknown>).filter(
    (e): e is [string, Record<string, unknown>] => typeof e[1] === 'object' && e[1] !== null,
  );
  const pick =
    entries.find(([, t]) => t.fault === true) ??
    entries.find(([k]) => k === report.mainThread) ??
    entries.find(([k]) => k === report.entryThread) ??
    entries[0];
  if (!pick) return undefined;
  const stack = Array.isArray(pick[1].stack) ? (pick[1].stack as unknown[]).filter((f): f is Frame => typeof f === 'object' && f !== null) : [];
  return { key: pick[0], stack };
}

function basename(p: string): string {
  const i = Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\'));
  return i >= 0 ? p.slice(i + 1) : p;
}

/** A function name without address, offset or parameter list. */
export function normaliseFunctionName(raw: string, suffixes: RegExp[] = DEFAULT_COMPILED.suffixes): string {
  let name = raw.trim();
  // "foo+0x1a", "foo + 26": an offset into the function.
  name = name.replace(/\s*\+\s*(0x[0-9a-fA-F]+|\d+)$/, '');
  // A parameter list (and what follows it: const, noexcept), found at bracket depth 0.
  name = stripParameters(name);
  for (const re of suffixes) name = name.replace(re, '');
  // Addresses that found their way into a name ("0x7f3a12c4e9a0", "<0x1234>").
  name = name.replace(/<?0x[0-9a-fA-F]{6,}>?/g, '<address>');
  return name.trim();
}

function stripParameters(name: string): string {
  // "operator()" is a name, not a parameter list.
  let depth = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === '<') depth++;
    else if (c === '>') depth = Math.max(0, depth - 1);
    else if (c === '(' && depth === 0 && i > 0) {
      if (name.slice(Math.max(0, i - 8), i).endsWith('operator') && name[i + 1] === ')') {
        i++;
        continue;
      }
      // "(anonymous namespace)::f" starts a name; only strip a list that is not followed by "::".
      const close = matchingParen(name, i);
      if (close > 0 && name.slice(close + 1).startsWith('::')) {
        i = close;
        continue;
      }
      return name.slice(0, i);
    }
  }
  return name;
}

function matchingParen(s: string, open: number): number {
  let d = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '(') d++;
    else if (s[i] === ')' && --d === 0) return i;
  }
  return -1;
}

/** The name a frame contributes to a fingerprint, or undefined when it has nothing stable. */
export function frameName(frame: Frame, compiled: CompiledGroupingRules = DEFAULT_COMPILED): string | undefined {
  const library = typeof frame.library === 'string' ? frame.library : typeof frame.path === 'string' ? frame.path : undefined;
  if (typeof frame.funcName === 'string' && frame.funcName.trim() && !/^(\?\?|<unknown>|unknown)$/.test(frame.funcName.trim())) {
    const name = compiled.normalise(frame.funcName);
    // JavaScript's anonymous functions are told apart by their file.
    if ((name === 'anonymous' || name === '<anonymous>') && library) return `${name}@${basename(library)}`;
    return name;
  }
  const offset = typeof frame.libraryOffset === 'string' ? frame.libraryOffset : typeof frame.libraryOffset === 'number' ? `0x${frame.libraryOffset.toString(16)}` : undefined;
  if (library && offset) return `${basename(library)}+${offset.toLowerCase()}`;
  return undefined;
}

function crashKind(report: Record<string, unknown>, rules: GroupingRules): { kind: string | null; from: string | null } {
  const attributes = typeof report.attributes === 'object' && report.attributes !== null ? (report.attributes as Record<string, unknown>) : {};
  const classifiers = Array.isArray(report.classifiers) ? report.classifiers : [];
  for (const source of rules.kind) {
    let value: unknown;
    if (source.startsWith('attribute:')) value = attributes[source.slice('attribute:'.length)];
    else if (source.startsWith('classifier:')) value = classifiers[Number(source.slice('classifier:'.length))];
    if ((typeof value === 'string' && value) || typeof value === 'number') return { kind: String(value), from: source };
  }
  return { kind: null, from: null };
}

/** A report's own fingerprint, as the column stores it, or undefined. */
export function sdkFingerprint(report: Record<string, unknown>): string | undefined {
  const f = report.fingerprint;
  if (typeof f !== 'string' || !f.trim()) return undefined;
  const t = f.trim();
  return /^[0-9a-fA-F]{64}$/.test(t) ? t.toLowerCase() : createHash('sha256').update(t).digest('hex');
}

/** The whole decision, frame by frame. */
export function explainFingerprint(report: Record<string, unknown>, compiled: CompiledGroupingRules = DEFAULT_COMPILED): FingerprintExplanation {
  const { rules } = compiled;
  const thread = faultingThread(report);
  const { kind, from } = crashKind(report, rules);
  const frames: ExplainedFrame[] = [];
  const used: string[] = [];
  const stack = thread?.stack ?? [];
  stack.forEach((frame, index) => {
    const name = frameName(frame, compiled);
    const explained = (usedIt: boolean, reason: string): void => {
      frames.push({ index, name: name ?? describeUnnamed(frame), used: usedIt, reason });
    };
    const skipped = skipReason(frame, name, compiled, used.length);
    if (skipped !== undefined) return explained(false, skipped);
    used.push(name!);
    explained(true, `frame ${used.length} of ${rules.frames}`);
  });
  const hashInput = hashInputOf(kind, used);
  const own = sdkFingerprint(report);
  return {
    fingerprint: own ?? sha256Hex(hashInput),
    source: own ? 'sdk' : 'frames',
    rulesVersion: compiled.version,
    thread: thread?.key ?? null,
    kind,
    kindFrom: from,
    frames,
    hashInput,
  };
}

/** Why a frame does not count towards the fingerprint, or undefined when it does (`name` is then defined). */
function skipReason(frame: Frame, name: string | undefined, compiled: CompiledGroupingRules, usedSoFar: number): string | undefined {
  const { rules } = compiled;
  if (name === undefined) return 'no function name and no module offset: its address moves with ASLR';
  if (frame.inlined === true && rules.inlined === 'skip') return 'an inlined frame (rules: inlined = skip)';
  if (frame.tailCall === true && rules.tailCalls === 'skip') return 'a frame rebuilt from a tail call (rules: tailCalls = skip)';
  const library = typeof frame.library === 'string' ? basename(frame.library) : typeof frame.path === 'string' ? basename(frame.path) : '';
  const rule = compiled.skipRule(name, library, frame.kind, usedSoFar === 0);
  if (rule >= 0) return compiled.skip[rule]!.rule.reason;
  if (usedSoFar >= rules.frames) return `beyond the top ${rules.frames} frames the rules use`;
  return undefined;
}

function hashInputOf(kind: string | null, used: string[]): string {
  return [`kind=${kind ?? ''}`, ...used].join('\n');
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * What ingestion needs of a report, in one pass: its fingerprint (as `explainFingerprint` would
 * give it) and its `callstack` (as `callstackOf`), without building the explanation.
 */
export function groupReport(report: Record<string, unknown>, compiled: CompiledGroupingRules = DEFAULT_COMPILED, maxCallstack = 128): { fingerprint: string; callstack: string[] } {
  const thread = faultingThread(report);
  const stack = thread?.stack ?? [];
  const own = sdkFingerprint(report);
  const key = stack.length <= MAX_REMEMBERED_STACK ? stackKey(stack) : undefined;
  let walked = key === undefined ? undefined : compiled.stacks.get(key);
  if (walked === undefined) {
    const callstack: string[] = [];
    const used: string[] = [];
    for (const frame of stack) {
      const name = frameName(frame, compiled);
      if (callstack.length < maxCallstack) callstack.push(name ?? describeUnnamed(frame));
      if (used.length < compiled.rules.frames && skipReason(frame, name, compiled, used.length) === undefined) used.push(name!);
    }
    walked = { callstack, used, byKind: new Map() };
    if (key !== undefined) compiled.rememberStack(key, walked);
  }
  const callstack = walked.callstack.slice(0, maxCallstack);
  if (own !== undefined) return { fingerprint: own, callstack };
  const kind = crashKind(report, compiled.rules).kind ?? '';
  let fingerprint = walked.byKind.get(kind);
  if (fingerprint === undefined) {
    fingerprint = sha256Hex(hashInputOf(kind, walked.used));
    if (walked.byKind.size < 64) walked.byKind.set(kind, fingerprint);
  }
  return { fingerprint, callstack };
}

/** Stacks longer than this are grouped without being remembered. */
const MAX_REMEMBERED_STACK = 256;

/**
 * Everything of a stack that `frameName`, `skipReason` and `describeUnnamed` read, as one string.
 * Each part carries its type and length, so no two different stacks share a key (a report cannot
 * forge another's key to plant a wrong fingerprint in the memo).
 */
function stackKey(stack: Frame[]): string {
  let key = '';
  for (const f of stack) {
    key += keyPart(f.funcName) + keyPart(f.library) + keyPart(f.path) + keyPart(f.libraryOffset) + keyPart(f.kind) +
      keyPart(f.inlined) + keyPart(f.tailCall) + keyPart(f.address) + '|';
  }
  return key;
}

function keyPart(v: unknown): string {
  if (typeof v === 'string') return `s${v.length}:${v}`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v === 'number' ? 'n' : 'b'}${String(v)};`;
  return '-';
}

function describeUnnamed(frame: Frame): string {
  const a = frame.address;
  return typeof a === 'string' || typeof a === 'number' ? `?? ${String(a)}` : '??';
}

/** The `callstack` attribute: every frame of the faulting thread, normalised, innermost first. */
export function callstackOf(report: Record<string, unknown>, compiled: CompiledGroupingRules = DEFAULT_COMPILED, max = 128): string[] {
  const thread = faultingThread(report);
  if (!thread) return [];
  const out: string[] = [];
  for (const frame of thread.stack) {
    if (out.length >= max) break;
    out.push(frameName(frame, compiled) ?? describeUnnamed(frame));
  }
  return out;
}

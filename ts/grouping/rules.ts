/**
 * Grouping rules: the data that decides which frames of a crash make its fingerprint. A project
 * without rules of its own uses DEFAULT_GROUPING_RULES; rules set on a project are stored whole
 * and versioned by the store (each `setGroupingRules` is a new version; crashes keep the
 * fingerprint they were given). docs/coroner.md describes the format.
 */

export interface SkipRule {
  /** Regular expression over the normalised function name. */
  function?: string;
  /** Regular expression over the module's file name (basename). */
  library?: string;
  /** Matches frames the snapshot marks with this `kind` (`signal` = a signal trampoline). */
  frameKind?: string;
  /**
   * `anywhere` (default): the frame is skipped wherever it is. `top`: only while no frame has
   * been used yet (frames above the code that crashed, like libc's abort path).
   */
  where?: 'anywhere' | 'top';
  /** Why: shown by the explain call. */
  reason: string;
}

export interface GroupingRules {
  /** Format version of this document; 1. */
  schema: 1;
  /** How many frames (after skipping) make the fingerprint. */
  frames: number;
  /**
   * What names the kind of crash, hashed with the frames so that a SIGSEGV and a SIGABRT at one
   * place stay apart. The first of these that a report has is used:
   * `attribute:<name>` or `classifier:<index>`.
   */
  kind: string[];
  /** Frames the compiler inlined: `keep` them as frames of their own, or `skip` them. */
  inlined: 'keep' | 'skip';
  /** Frames rebuilt where a tail call left them off the stack: `keep` or `skip`. */
  tailCalls: 'keep' | 'skip';
  /** Suffixes compilers add to function copies (`.cold`, `.isra.0`), removed before matching. */
  stripSuffixes: string[];
  skip: SkipRule[];
}

export const DEFAULT_GROUPING_RULES: GroupingRules = {
  schema: 1,
  frames: 5,
  kind: ['attribute:signal', 'classifier:0', 'attribute:error.type'],
  inlined: 'keep',
  tailCalls: 'keep',
  stripSuffixes: ['\\.(cold|isra|constprop|part|lto_priv|localalias)(\\.\\d+)*$', ' \\[clone [^\\]]*\\]$'],
  skip: [
    { frameKind: 'signal', reason: 'a signal trampoline: every crash in a signal handler passes it' },
    { function: '^(__restore_rt|__kernel_rt_sigreturn)$', reason: 'a signal trampoline: every crash in a signal handler passes it' },
    { function: '^(__GI_)?(raise|abort)$', reason: "libc's abort path: every abort passes it" },
    { function: '^(__pthread_kill|__pthread_kill_implementation|__pthread_kill_internal|pthread_kill|__GI___pthread_kill)(@.*)?$', reason: "libc's abort path: every abort passes it" },
    { function: '^(__GI_)?(__assert_fail|__assert_fail_base|__assert_perror_fail|__assert)$', reason: 'assert internals: every failed assertion passes them' },
    { function: '^(__libc_message|__libc_fatal|malloc_printerr|__fortify_fail|__chk_fail|__stack_chk_fail)$', reason: "libc's fatal error reporting: every such abort passes it" },
    { function: '^(std::terminate|std::__terminate|__cxxabiv1::__terminate|__cxa_throw|__cxa_rethrow|__gnu_cxx::__verbose_terminate_handler|std::rethrow_exception|__cxa_call_terminate|__cxa_call_unexpected|_Unwind_RaiseException|_Unwind_Resume)$', reason: 'C++ exception machinery: every uncaught exception passes it' },
    { library: '^(libstdc\\+\\+|libc\\+\\+abi|libc\\+\\+|libgcc_s)\\.so', function: '\\+0x[0-9a-f]+$', where: 'top', reason: 'an unnamed frame of the C++ runtime above the code that threw (its terminate handler, without symbols)' },
    { function: '^(core::panicking::|std::panicking::|std::panic::|rust_panic|__rust_start_panic|__rust_end_short_backtrace|__rustc::rust_begin_unwind|rust_begin_unwind|core::result::unwrap_failed|core::option::unwrap_failed|core::option::expect_failed)', reason: 'Rust panic machinery: every panic passes it' },
    { function: '^runtime\\.(gopanic|sigpanic|panicmem|panicmemAddr|fatalpanic|raise|raisebadsignal|crash|dieFromSignal|sigfwdgo|sighandler|throw|fatalthrow|goPanicIndex|goPanicIndexU|goPanicSlice.*|panicIndex|panicdivide|panicshift)$', reason: 'Go runtime panic machinery: every panic passes it' },
    { function: '^(_start|__libc_start_main|__libc_start_call_main|__libc_start_main_impl|start_thread|clone|clone3|__clone|__clone3|thread_start)$', reason: 'process or thread entry: every stack ends there' },
    { function: '^(process\\.processTicksAndRejections|processTicksAndRejections|listOnTimeout|processTimers)$', reason: 'Node.js event loop internals: every asynchronous stack ends there' },
  ],
};

export class GroupingRulesError extends Error {
  override name = 'GroupingRulesError';
}

/** Validates rules given by a user (JSON); missing fields take the defaults. Throws GroupingRulesError with a sentence. */
export function parseGroupingRules(input: unknown): GroupingRules {
  if (input === null || input === undefined) return DEFAULT_GROUPING_RULES;
  if (typeof input !== 'object' || Array.isArray(input)) throw new GroupingRulesError('Grouping rules must be a JSON object.');
  const o = input as Record<string, unknown>;
  const rules: GroupingRules = { ...DEFAULT_GROUPING_RULES };
  if (o.schema !== undefined && o.schema !== 1) throw new GroupingRulesError(`Grouping rules schema ${String(o.schema)} is not known (only 1).`);
  if (o.frames !== undefined) {
    if (typeof o.frames !== 'number' || !Number.isInteger(o.frames) || o.frames < 1 || o.frames > 64) {
      throw new GroupingRulesError('"frames" must be an integer from 1 to 64.');
    }
    rules.frames = o.frames;
  }
  if (o.kind !== undefined) {
    if (!Array.isArray(o.kind) || !o.kind.every((k) => typeof k === 'string' && /^(attribute:.+|classifier:\d+)$/.test(k))) {
      throw new GroupingRulesError('"kind" must be a list of "attribute:<name>" or "classifier:<index>".');
    }
    rules.kind = o.kind as string[];
  }
  for (const key of ['inlined', 'tailCalls'] as const) {
    if (o[key] !== undefined) {
      if (o[key] !== 'keep' && o[key] !== 'skip') throw new GroupingRulesError(`"${key}" must be "keep" or "skip".`);
      rules[key] = o[key];
    }
  }
  if (o.stripSuffixes !== undefined) {
    if (!Array.isArray(o.stripSuffixes) || !o.stripSuffixes.every((s) => typeof s === 'string')) {
      throw new GroupingRulesError('"stripSuffixes" must be a list of regular expressions.');
    }
    o.stripSuffixes.forEach((s, i) => compile(s as string, `stripSuffixes[${i}]`));
    rules.stripSuffixes = o.stripSuffixes as string[];
  }
  if (o.skip !== undefined) {
    if (!Array.isArray(o.skip)) throw new GroupingRulesError('"skip" must be a list of rules.');
    rules.skip = o.skip.map((r, i): SkipRule => {
      if (typeof r !== 'object' || r === null) throw new GroupingRulesError(`skip[${i}] must be an object.`);
      const s = r as Record<string, unknown>;
      if (typeof s.reason !== 'string' || !s.reason) throw new GroupingRulesError(`skip[${i}] needs a "reason".`);
      if (s.function === undefined && s.library === undefined && s.frameKind === undefined) {
        throw new GroupingRulesError(`skip[${i}] must match on "function", "library" or "frameKind".`);
      }
      const out: SkipRule = { reason: s.reason };
      for (const key of ['function', 'library', 'frameKind'] as const) {
        if (s[key] === undefined) continue;
        if (typeof s[key] !== 'string') throw new GroupingRulesError(`skip[${i}].${key} must be a string.`);
        if (key !== 'frameKind') compile(s[key] as string, `skip[${i}].${key}`);
        out[key] = s[key] as string;
      }
      if (s.where !== undefined) {
        if (s.where !== 'anywhere' && s.where !== 'top') throw new GroupingRulesError(`skip[${i}].where must be "anywhere" or "top".`);
        out.where = s.where;
      }
      return out;
    });
  }
  const unknown = Object.keys(o).filter((k) => !['schema', 'frames', 'kind', 'inlined', 'tailCalls', 'stripSuffixes', 'skip'].includes(k));
  if (unknown.length) throw new GroupingRulesError(`Unknown grouping rule field(s): ${unknown.join(', ')}.`);
  return rules;
}

export function compile(source: string, where: string): RegExp {
  try {
    return new RegExp(source);
  } catch (err) {
    throw new GroupingRulesError(`${where} is not a valid regular expression: ${(err as Error).message}.`);
  }
}

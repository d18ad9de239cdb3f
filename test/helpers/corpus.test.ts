/**
 * The corpus matcher itself. It has to accept a correct walk and refuse a wrong one, or the
 * engine tests prove nothing:
 *   - arm64 cases: gdb's own walk of each core (gdb-frames.json, which the generator verified
 *     with cases.py) must satisfy every fact;
 *   - x86_64 cases: a stack built from each expectation must satisfy every fact, and the same
 *     stack with one frame, one inline frame or one recursion level removed must not.
 */

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import test from 'ava';

import type { Snapshot, SnapshotFrame, SnapshotThread } from '../../ts/native/types.js';
import {
  checkSnapshot,
  listCases,
  matchFrames,
  normCasesPy,
  normCheckPy,
  type ExpectedCase,
  type FrameToken,
} from './corpus.js';

const cases = listCases();

test('check.py name normalisation', (t) => {
  t.is(normCheckPy('Pipeline::run(std::vector<int, std::allocator<int> > const&)'), 'Pipeline::run');
  t.is(normCheckPy('Validator<std::vector<int, std::allocator<int> > >::check'), 'Validator::check');
  t.is(normCheckPy('__GI_abort'), 'abort');
  t.is(normCheckPy('recurse.constprop.0.isra.0'), 'recurse');
  t.is(normCheckPy('memcpy@@GLIBC_2.14'), 'memcpy');
  t.is(normCheckPy('foo [clone .cold]'), 'foo');
  t.is(normCheckPy('rustpanic::level3::h0123456789abcdef'), 'rustpanic::level3');
  t.is(normCheckPy(undefined), '??');
  t.is(normCheckPy('0x7f00deadbeef'), '??');
});

test('cases.py name normalisation', (t) => {
  t.is(normCasesPy('__gnu_cxx::__verbose_terminate_handler()'), '__gnu_cxx::__verbose_terminate_handler');
  t.is(normCasesPy('__GI_raise'), 'raise');
  t.is(normCasesPy('__libc_start_main_impl'), '__libc_start_main_impl');
  t.is(normCasesPy('__libc_pthread_kill'), 'pthread_kill');
  t.is(normCasesPy(null), null);
});

// ---------------------------------------------------------------- arm64: gdb's walk passes

interface GdbFrame {
  name: string | null;
  inline: boolean;
  type: string;
  pc: string;
}

function snapshotFromGdb(expected: ExpectedCase): Snapshot {
  const gdb = JSON.parse(readFileSync(path.join(expected.dir, 'gdb-frames.json'), 'utf8')) as { lwp: number; frames: GdbFrame[] }[];
  const notes = JSON.parse(readFileSync(path.join(expected.dir, 'notes.json'), 'utf8'));
  const threads: Record<string, SnapshotThread> = {};
  for (const thread of gdb) {
    threads[String(thread.lwp)] = {
      stack: thread.frames.map((f) => {
        const frame: SnapshotFrame = { address: f.pc, inlined: f.inline };
        if (f.name) frame.funcName = f.name;
        if (f.type === 'SIGTRAMP') frame.kind = 'signal';
        return frame;
      }),
    };
  }
  const siginfo = notes.siginfo ?? {};
  return {
    uuid: 'gdb',
    timestamp: 0,
    lang: 'c',
    langVersion: '',
    agent: 'gdb',
    agentVersion: '',
    mainThread: String(notes.threads[0].tid),
    threads,
    signal: { number: siginfo.si_signo, code: siginfo.si_code, address: siginfo.si_addr_or_pid },
  };
}

const arm64 = cases.filter((c) => c.dialect === 'make-arm64-cores' && existsSync(path.join(c.dir, 'gdb-frames.json')));
test('the corpus has arm64 cases with gdb walks', (t) => {
  t.true(arm64.length >= 4, `found ${arm64.map((c) => c.id).join(', ') || 'none'}`);
});

for (const expected of arm64) {
  test(`gdb's walk of ${expected.id} satisfies every fact`, (t) => {
    const facts = checkSnapshot(expected, snapshotFromGdb(expected));
    t.true(facts.length >= 5, `only ${facts.length} facts checked`);
    t.deepEqual(facts.filter((f) => !f.ok).map((f) => `${f.what}: ${f.why}`), []);
  });

  test(`gdb's walk of ${expected.id} minus one frame is refused`, (t) => {
    const snapshot = snapshotFromGdb(expected);
    const crash = snapshot.threads[snapshot.mainThread]!;
    // Drop the first named frame the expectation asks for by name (not a `?`).
    const spec = expected.crash.dialect === 'make-arm64-cores' ? expected.crash.frames : [];
    const victim = spec.find((n) => n !== '?' && n !== 'main')!;
    const index = crash.stack.findIndex((f) => normCasesPy(f.funcName ?? null) === victim);
    t.true(index >= 0, `gdb's walk has no ${victim}`);
    crash.stack.splice(index, 1);
    const verdict = matchFrames(expected, crash.stack);
    t.false(verdict.ok);
    t.regex(verdict.why, /does not contain/);
  });
}

test('an inline frame reported as a real frame is refused (cxx_exception)', (t) => {
  const expected = arm64.find((c) => c.name === 'cxx_exception');
  if (!expected) return t.fail('no arm64/cxx_exception case');
  const snapshot = snapshotFromGdb(expected);
  const crash = snapshot.threads[snapshot.mainThread]!;
  for (const f of crash.stack) f.inlined = false;
  const verdict = matchFrames(expected, crash.stack);
  t.false(verdict.ok);
  t.regex(verdict.why, /not reported as an inlined frame/);
});

// ---------------------------------------------------------------- x86_64: built stacks

function frame(funcName: string, inlined = false): SnapshotFrame {
  return { funcName, inlined, address: '0x1000' };
}

/** A stack that satisfies the expectation: libc's top frames, the tokens, libc's start. */
function stackFor(tokens: FrameToken[], afterTop: boolean): SnapshotFrame[] {
  const stack: SnapshotFrame[] = afterTop ? [frame('__pthread_kill_implementation'), frame('raise')] : [];
  for (const token of tokens) {
    if (token.any) stack.push(frame('_PyEval_EvalFrameDefault'), frame('filler(int)'));
    else if (token.fn === '<signal>') stack.push({ funcName: '__restore_rt', kind: 'signal', address: '0x1000' });
    else for (let i = 0; i < (token.repeat ?? 1); i++) stack.push(frame(`${token.fn}(void)`, token.inline === true));
  }
  stack.push(frame('__libc_start_call_main'), frame('__libc_start_main_impl'), frame('_start'));
  return stack;
}

function snapshotFor(expected: ExpectedCase): Snapshot {
  if (expected.crash.dialect !== 'make-corpus') throw new Error('not a make-corpus case');
  const threads: Record<string, SnapshotThread> = {};
  const crashTid = String(expected.crashTid);
  threads[crashTid] = { fault: true, stack: stackFor(expected.crash.frames, expected.crash.match === 'after-top') };
  const depths = expected.threadDepths;
  let next = 1;
  while (Object.keys(threads).length < expected.threadCount) {
    const named = [...Object.keys(expected.threadFrames ?? {}), ...Object.keys(depths?.byTid ?? {})];
    const tid = named[next - 1] ?? String(900000 + next);
    next += 1;
    const own = expected.threadFrames?.[tid];
    if (own) {
      threads[tid] = { stack: stackFor(own.frames, own.match === 'after-top') };
      continue;
    }
    const stack = [frame('__futex_abstimed_wait_common')];
    if (expected.otherThreadsContain) stack.push(frame(expected.otherThreadsContain));
    if (depths) for (let i = 0; i < (depths.byTid[tid] ?? 0); i++) stack.push(frame(depths.fn));
    stack.push(frame('start_thread'), frame('clone3'));
    threads[tid] = { stack };
  }
  const signal: Snapshot['signal'] = { number: expected.signal.number };
  if (expected.signal.code !== undefined) signal.code = expected.signal.code;
  if (expected.signal.address !== undefined) signal.address = `0x${expected.signal.address.toString(16)}`;
  return { uuid: 'u', timestamp: 0, lang: 'c', langVersion: '', agent: 'test', agentVersion: '', mainThread: crashTid, threads, signal };
}

const x86 = cases.filter((c) => c.dialect === 'make-corpus');
test('the corpus has make-corpus cases', (t) => {
  t.true(x86.length >= 9, `found ${x86.map((c) => c.id).join(', ') || 'none'}`);
});

for (const expected of x86) {
  test(`a stack built from ${expected.id}'s expectation satisfies every fact`, (t) => {
    const facts = checkSnapshot(expected, snapshotFor(expected));
    t.deepEqual(facts.filter((f) => !f.ok).map((f) => `${f.what}: ${f.why}`), []);
  });

  test(`${expected.id}: a missing frame, inline frame or wrong thread count is refused`, (t) => {
    if (expected.crash.dialect !== 'make-corpus') return t.fail('dialect');
    const tokens = expected.crash.frames;
    const required = tokens.findIndex((tok) => !tok.any && !tok.inline);
    const withoutOne = tokens.filter((_, i) => i !== required);
    const missing = matchFrames(expected, stackFor(withoutOne, expected.crash.match === 'after-top'));
    t.false(missing.ok, `dropping ${tokens[required]?.fn} still matched`);
    t.regex(missing.why, /stuck at/);

    const inline = tokens.findIndex((tok) => tok.inline);
    if (inline >= 0) {
      // check.py tolerates a missing inline frame but counts it; so does the matcher.
      const verdict = matchFrames(expected, stackFor(tokens.filter((_, i) => i !== inline), expected.crash.match === 'after-top'));
      t.true(verdict.ok, verdict.why);
      t.is(verdict.missingInlines, 1);
    }

    const snapshot = snapshotFor(expected);
    const extra = String(999999);
    snapshot.threads[extra] = { stack: [frame('main')] };
    const facts = checkSnapshot(expected, snapshot);
    t.true(facts.some((f) => f.what === 'thread count' && !f.ok));
  });
}

test('many-threads: one thread one level short is refused', (t) => {
  const expected = x86.find((c) => c.name === 'many-threads');
  if (!expected?.threadDepths) return t.fail('no many-threads case with thread_depths');
  t.is(Object.keys(expected.threadDepths.byTid).length, 200);
  const snapshot = snapshotFor(expected);
  const [tid] = Object.keys(expected.threadDepths.byTid);
  const stack = snapshot.threads[tid!]!.stack;
  stack.splice(stack.findIndex((f) => f.funcName === 'recurse'), 1);
  const failed = checkSnapshot(expected, snapshot).filter((f) => !f.ok);
  t.is(failed.length, 1);
  t.regex(failed[0]!.why, /199\/200 threads have the right depth/);
});

test('deep-recursion: 9,999 levels instead of 10,000 are refused', (t) => {
  const expected = x86.find((c) => c.name === 'deep-recursion');
  if (!expected || expected.crash.dialect !== 'make-corpus') return t.fail('no deep-recursion case');
  const tokens = expected.crash.frames.map((tok) => (tok.repeat ? { ...tok, repeat: tok.repeat - 1 } : tok));
  t.false(matchFrames(expected, stackFor(tokens, false)).ok);
});

/**
 * The engine against the shared corpus: for every case, `ptrace --core CORE EXE -o OUT` (with the
 * case's sysroot / debug dirs) must produce a snapshot whose crashing thread, thread count,
 * signal, other threads and (many-threads) per-thread depths are what the case's expected.json
 * promises, judged with the corpus checkers' own rules (test/helpers/corpus.ts).
 */

import test from 'ava';

import { checkSnapshot, corpusDir, listCases, type ExpectedCase } from '../helpers/corpus.js';
import { snapshotCase } from '../helpers/run.js';

let cases: ExpectedCase[] = [];
let corpusProblem: string | undefined;
try {
  cases = listCases();
} catch (err) {
  corpusProblem = (err as Error).message;
}

test.serial('the corpus is there', (t) => {
  t.is(corpusProblem, undefined, `corpus at ${corpusDir()}: ${corpusProblem}`);
  t.true(cases.length > 0, 'the corpus has cases');
});

// Every case the shared generators and test/cases/make-cases.sh promise must be there: a case
// that silently went missing would leave what it proves untested.
const promised = [
  ...['c-segv-O0', 'c-segv-O2', 'c-abort', 'cpp-throw', 'many-threads', 'deep-recursion', 'stripped',
    'no-fp-no-unwind', 'aarch64-segv', 'aarch64-abort', 'big-python'].map((c) => `x86_64/${c}`),
  ...['threads_null_O0', 'threads_null_O2', 'abort_nested', 'cxx_exception'].map((c) => `arm64/${c}`),
  ...['go-panic', 'rust-panic', 'signal-handler', 'debuglink', 'compressed-debug', 'arm64-pac',
    'arm64-signal-frame'].map((c) => `cases/${c}`),
];

test.serial('every promised case was built', (t) => {
  const have = new Set(cases.map((c) => c.id));
  t.deepEqual(promised.filter((id) => !have.has(id)), [], 'cases missing from the corpus (scripts/corpus.sh builds them)');
});

for (const expected of cases) {
  // One at a time: the machine has two cores and other test files run beside this one.
  test.serial(`snapshot of ${expected.id}`, async (t) => {
    const outcome = await snapshotCase(expected);
    if ('error' in outcome) {
      t.fail(outcome.error);
      return;
    }
    const facts = checkSnapshot(expected, outcome.snapshot);
    t.true(facts.length > 0, 'checkSnapshot judged nothing');
    const failed = facts.filter((f) => !f.ok);
    t.log(`${facts.length - failed.length}/${facts.length} facts hold (${outcome.run.ms} ms)`);
    t.deepEqual(
      failed.map((f) => `${f.what}: ${f.why}`),
      [],
      `${expected.id}: ${failed.length} of ${facts.length} facts do not hold`,
    );
  });
}

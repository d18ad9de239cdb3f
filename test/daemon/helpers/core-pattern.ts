/**
 * core_pattern is one per machine, and other people's tests need it to be `core`. Every test that
 * changes it holds an exclusive flock on /run/lock/coresnap-core-pattern.lock through a small
 * guardian shell process:
 *
 * - after taking the lock it repairs what a killed run left behind (a coresnap-handler pattern
 *   whose archive is a test archive, or a `coresnap triage` folder's pattern: back to `core`,
 *   core_pipe_limit 0);
 * - it remembers the pattern and pipe limit it found;
 * - it waits until its standard input closes: when the test releases it, or when the test
 *   process dies in any way (even SIGKILL), since the pipe closes with it;
 * - then, if core_pattern is a coresnap-handler or triage pattern, it puts back what it found, and exits,
 *   which releases the lock.
 *
 * It runs in its own session, so a signal to the test's process group does not stop it before
 * it restores.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

export const LOCK_FILE = '/run/lock/coresnap-core-pattern.lock';
export const TEST_ARCHIVE_PREFIX = '/tmp/cs-dt-';
const CORE_PATTERN = '/proc/sys/kernel/core_pattern';
const PIPE_LIMIT = '/proc/sys/kernel/core_pipe_limit';

const GUARDIAN = `
set -u
cp=${CORE_PATTERN}; pl=${PIPE_LIMIT}
cur=$(cat "$cp")
case "$cur" in
  *coresnap-handler*--archive=${TEST_ARCHIVE_PREFIX}*|*/coresnap-triage-*/core.%p)
    echo core > "$cp"; echo 0 > "$pl"
    echo "repaired a core_pattern left by a killed test run: $cur" >&2 ;;
esac
old=$(cat "$cp"); old_limit=$(cat "$pl")
echo "locked"
cat > /dev/null
now=$(cat "$cp")
case "$now" in
  *coresnap-handler*|*/coresnap-triage-*/core.%p)
    printf '%s\\n' "$old" > "$cp"; echo "$old_limit" > "$pl" ;;
esac
`;

export interface PatternLock {
  /** What core_pattern was when the lock was taken (after repair). */
  original: string;
  /** Releases the lock; core_pattern is restored before this resolves. */
  release(): Promise<void>;
}

export function readPattern(): string {
  return fs.readFileSync(CORE_PATTERN, 'utf8').replace(/\n$/, '');
}

export function readPipeLimit(): number {
  return Number(fs.readFileSync(PIPE_LIMIT, 'utf8').trim());
}

/** Takes the lock (waiting for other holders), repairs leftovers, arms the restore. */
export function lockCorePattern(timeoutMs = 600_000): Promise<PatternLock> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn('flock', ['-x', '-w', String(Math.ceil(timeoutMs / 1000)), LOCK_FILE, 'sh', '-c', GUARDIAN], {
      stdio: ['pipe', 'pipe', 'inherit'],
      detached: true,
    });
    let out = '';
    let done = false;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (!done && out.includes('locked')) {
        done = true;
        const original = readPattern();
        resolve({
          original,
          release: async () => {
            child.stdin?.end();
            await exited;
          },
        });
      }
    });
    child.once('exit', (code) => {
      if (!done) {
        done = true;
        reject(new Error(`could not lock ${LOCK_FILE} (flock exited with ${code})`));
      }
    });
  });
}

/**
 * Runs `body` with the lock held and core_pattern restored afterwards whatever happens, then
 * checks it really was restored.
 */
export async function withCorePattern<T>(body: (lock: PatternLock) => Promise<T>): Promise<T> {
  const lock = await lockCorePattern();
  try {
    return await body(lock);
  } finally {
    await lock.release();
    const now = readPattern();
    if (now !== lock.original) throw new Error(`core_pattern is "${now}" after the test, not "${lock.original}"`);
  }
}

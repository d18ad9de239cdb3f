// `npm run bench` (capture part): coresnap-handler beside a plain `cat > file` for the same core,
// measured in one run, printed as ratios (issue 4, "Capture").
//
// - Latency: a small C program forks a child that touches --mb MiB of memory (non-zero pages, so
//   the core really carries them) and raises SIGSEGV; the child notes CLOCK_MONOTONIC in a shared
//   page just before the signal, the parent reads the clock again when waitpid returns. With
//   core_pipe_limit > 0 the kernel waits for the pipe helper before the process can be reaped, so
//   this is crash-to-reaped latency. The two core_pattern variants alternate crash by crash:
//     (a) `|<tmp>/cat.sh %P %e`, a shell script that does `cat > <tmp>/core.$$` (same pipe
//         mechanism, plain copy, no fsync);
//     (b) `|coresnap-handler --archive=<tmp>/a %P %I %s %c %d %t %e`, what `coresnap install`
//         writes (ts/daemon/install.ts handlerPattern), with a handler.conf that keeps every crash
//         (no rate limit) and takes only cores of executables under <tmp> (others get `core`).
//   Target: median(handler) <= 1.2x median(cat).
// - Peak memory: a few more crashes through `|<tmp>/w.sh ...`, which runs the handler under
//   `/usr/bin/time -f %M` (its maximum RSS), beside `/usr/bin/time -f %M node -e 0`, alternated.
//   Target: handler < 0.25x node.
//
// core_pattern is one per machine: everything runs under the exclusive flock other coresnap tests
// use (/run/lock/coresnap-core-pattern.lock, as test/daemon/helpers/core-pattern.ts does), held by
// a guardian shell in its own session that puts the previous core_pattern and core_pipe_limit back
// when our end of its stdin closes, even if this process is killed. We also restore them
// ourselves in a finally and on SIGINT/SIGTERM, and check afterwards that they are back.
//
// Options: --crashes N per variant (12), --mb M (64), --mem N handler runs for memory (3).
// Needs root, gcc, flock and /usr/bin/time; bounded to ~90 s of crashing.

import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { findHandler, handlerPattern } from '../daemon/install.js';

const CORE_PATTERN = '/proc/sys/kernel/core_pattern';
const PIPE_LIMIT = '/proc/sys/kernel/core_pipe_limit';
const LOCK_FILE = '/run/lock/coresnap-core-pattern.lock';
/** Under /tmp/cs-dt-*: the test guardian also repairs a handler pattern a killed run left there. */
const DIR_PREFIX = '/tmp/cs-dt-bh-';
const CRASHER = 'cs-bench-crash';
const PATTERN_MAX = 127;
const DEADLINE_MS = 90_000;
const execFileAsync = promisify(execFile);

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? Number(process.argv[at + 1]) : fallback;
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} wants a positive integer`);
  return value;
}

const CRASHES = option('crashes', 12);
const MB = option('mb', 64);
const MEM_RUNS = option('mem', 3);

const CRASH_C = `
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 64;
    volatile long long *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) { perror("mmap"); return 1; }
    struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
    if (setrlimit(RLIMIT_CORE, &unlimited) != 0) { perror("setrlimit"); return 1; }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        size_t size = mb << 20;
        unsigned char *block = malloc(size);
        if (!block) _exit(3);
        for (size_t i = 0; i < size; i += 4096) memset(block + i, (int)(i >> 12) | 1, 4096);
        *shared = now_ns();
        raise(SIGSEGV);
        _exit(4);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) { perror("waitpid"); return 1; }
    long long reaped = now_ns();
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV) {
        fprintf(stderr, "the child did not die of SIGSEGV (status %d)\\n", status);
        return 1;
    }
    printf("%lld %d %d\\n", reaped - *shared, WCOREDUMP(status) ? 1 : 0, (int)pid);
    return 0;
}
`;

/** Holds the flock; puts back what it found when its stdin closes (see the header). */
const GUARDIAN = `
set -u
cp=${CORE_PATTERN}; pl=${PIPE_LIMIT}
cur=$(cat "$cp")
case "$cur" in
  *${DIR_PREFIX}*) echo core > "$cp"; echo 0 > "$pl"
    echo "repaired a core_pattern left by a killed bench run: $cur" >&2 ;;
esac
old=$(cat "$cp"); old_limit=$(cat "$pl")
echo "locked"
cat > /dev/null
case "$(cat "$cp")" in
  *${DIR_PREFIX}*) printf '%s\\n' "$old" > "$cp"; echo "$old_limit" > "$pl" ;;
esac
`;

interface Lock {
  child: ChildProcess;
  exited: Promise<void>;
}

function lockCorePattern(): Promise<Lock> {
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['-x', '-w', '600', LOCK_FILE, 'sh', '-c', GUARDIAN], {
      stdio: ['pipe', 'pipe', 'inherit'],
      detached: true,
    });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    let out = '';
    let done = false;
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (!done && out.includes('locked')) {
        done = true;
        resolve({ child, exited });
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

const readProc = (file: string): string => fs.readFileSync(file, 'utf8').replace(/\n$/, '');
const writeProc = (file: string, value: string): void => fs.writeFileSync(file, `${value}\n`);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** One crash; async so that SIGINT/SIGTERM handlers get to run between crashes. */
async function crashOnce(crasher: string): Promise<{ ms: number; dumped: boolean; pid: number }> {
  let stdout = '';
  try {
    ({ stdout } = await execFileAsync(crasher, [String(MB)], { encoding: 'utf8', timeout: 60_000 }));
  } catch (e) {
    throw new Error(`${crasher} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  const fields = stdout.trim().split(/\s+/).map(Number);
  const [ns, dumped, pid] = fields;
  if (ns === undefined || dumped === undefined || pid === undefined || fields.some(Number.isNaN)) {
    throw new Error(`${crasher} printed "${stdout.trim()}", not "<ns> <dumped> <pid>"`);
  }
  return { ms: ns / 1e6, dumped: dumped === 1, pid };
}

/**
 * The one regular file in `dir` (what a crash left), removed after its size is noted. The handler
 * lets the crashed process go as soon as it holds the whole core and makes the spool durable
 * afterwards, so the file may appear a moment after the reap: wait for it (outside the timing).
 */
async function takeOnly(dir: string, what: string): Promise<number> {
  let names = fs.readdirSync(dir).filter((n) => !n.startsWith('.'));
  for (let i = 0; i < 200 && names.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 25));
    names = fs.readdirSync(dir).filter((n) => !n.startsWith('.'));
  }
  if (names.length !== 1) throw new Error(`${what}: expected one core in ${dir}, found ${names.length} (${names.join(', ')})`);
  const file = path.join(dir, names[0] as string);
  const size = fs.statSync(file).size;
  fs.rmSync(file);
  return size;
}

async function bench(dir: string, handler: string): Promise<void> {
  const crasher = path.join(dir, CRASHER);
  fs.writeFileSync(`${crasher}.c`, CRASH_C);
  const cc = spawnSync('gcc', ['-O2', '-o', crasher, `${crasher}.c`], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);

  // (a) the baseline: the same pipe, a plain copy. Other programs crashing meanwhile get what
  // `core` would give them.
  const cores = path.join(dir, 'cat');
  fs.mkdirSync(cores, { mode: 0o700 });
  const catScript = path.join(dir, 'cat.sh');
  fs.writeFileSync(
    catScript,
    `#!/bin/sh\ncase "$2" in\n  ${CRASHER}) exec cat > ${cores}/core.$$ ;;\n  *) exec cat > /proc/$1/cwd/core ;;\nesac\n`,
    { mode: 0o700 },
  );
  const catPattern = `|${catScript} %P %e`;

  // (b) the handler, as installed, on a temporary archive.
  const archive = path.join(dir, 'a');
  fs.mkdirSync(path.join(archive, 'state'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(
    path.join(archive, 'state', 'handler.conf'),
    `quota=none\nrate_burst=1000000\nrate_window=1\nonly_under=${dir}/\nothers=core\n`,
    { mode: 0o600 },
  );
  let handlerPath = handler;
  if (Buffer.byteLength(handlerPattern(handlerPath, archive)) > PATTERN_MAX) {
    handlerPath = path.join(dir, 'coresnap-handler');
    fs.symlinkSync(handler, handlerPath);
  }
  const ourPattern = handlerPattern(handlerPath, archive);
  const pending = path.join(archive, 'pending');
  const meta = path.join(archive, 'meta');

  // The handler under /usr/bin/time, for its peak memory only (not in the latency runs).
  const rss = path.join(dir, 'rss');
  fs.mkdirSync(rss, { mode: 0o700 });
  const wrapper = path.join(dir, 'w.sh');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec /usr/bin/time -o ${rss}/$1 -f %M ${handler} --archive=${archive} "$@"\n`, { mode: 0o700 });
  const memPattern = `|${wrapper} %P %I %s %c %d %t %e`;
  for (const p of [catPattern, ourPattern, memPattern]) {
    if (Buffer.byteLength(p) > PATTERN_MAX) throw new Error(`core_pattern too long (${Buffer.byteLength(p)} > ${PATTERN_MAX} bytes): ${p}`);
  }

  writeProc(PIPE_LIMIT, '16');
  const catMs: number[] = [];
  const ourMs: number[] = [];
  const sizes = { cat: new Set<number>(), handler: new Set<number>() };
  let notDumped = 0;
  const started = Date.now();
  // One warm-up crash of each (page cache, the handler binary), not counted.
  for (let i = -1; i < CRASHES && Date.now() - started < DEADLINE_MS; i++) {
    const order: ('cat' | 'handler')[] = i % 2 === 0 ? ['cat', 'handler'] : ['handler', 'cat'];
    for (const variant of order) {
      writeProc(CORE_PATTERN, variant === 'cat' ? catPattern : ourPattern);
      const { ms, dumped } = await crashOnce(crasher);
      if (!dumped) notDumped++;
      if (variant === 'cat') {
        sizes.cat.add(await takeOnly(cores, 'cat'));
      } else {
        sizes.handler.add(await takeOnly(pending, 'handler'));
        for (const name of fs.readdirSync(meta)) fs.rmSync(path.join(meta, name));
      }
      if (i >= 0) (variant === 'cat' ? catMs : ourMs).push(ms);
    }
  }

  const handlerKb: number[] = [];
  const nodeKb: number[] = [];
  writeProc(CORE_PATTERN, memPattern);
  for (let i = 0; i < MEM_RUNS; i++) {
    const { pid } = await crashOnce(crasher);
    await takeOnly(pending, 'handler under time');
    const kb = Number(fs.readFileSync(path.join(rss, String(pid)), 'utf8').trim().split('\n').pop());
    if (!Number.isFinite(kb) || kb <= 0) throw new Error(`no peak RSS from /usr/bin/time for the handler of pid ${pid}`);
    handlerKb.push(kb);
    const node = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, '-e', '0'], { encoding: 'utf8' });
    const nodePeak = Number(node.stderr.trim().split('\n').pop());
    if (node.status !== 0 || !Number.isFinite(nodePeak) || nodePeak <= 0) throw new Error(`/usr/bin/time node -e 0 failed: ${node.stderr}`);
    nodeKb.push(nodePeak);
  }

  const catMedian = median(catMs);
  const ourMedian = median(ourMs);
  const latencyRatio = ourMedian / catMedian;
  const memRatio = median(handlerKb) / median(nodeKb);
  const fmt = (v: number): string => v.toFixed(1);
  console.log(`handler bench: ${catMs.length} crashes per variant of a ${MB} MiB process, alternated; core_pipe_limit 16`);
  console.log(`  core sizes: cat ${[...sizes.cat].join(',')} B, handler ${[...sizes.handler].join(',')} B${notDumped ? `; ${notDumped} crash(es) without WCOREDUMP` : ''}`);
  console.log(`  crash-to-reaped, cat > file:      median ${fmt(catMedian)} ms (min ${fmt(Math.min(...catMs))}, max ${fmt(Math.max(...catMs))})`);
  console.log(`  crash-to-reaped, coresnap-handler: median ${fmt(ourMedian)} ms (min ${fmt(Math.min(...ourMs))}, max ${fmt(Math.max(...ourMs))})`);
  console.log(`  latency ratio handler/cat: ${latencyRatio.toFixed(2)} (target <= 1.2) ${latencyRatio <= 1.2 ? 'OK' : 'MISSED'}`);
  console.log(`  peak RSS: handler median ${median(handlerKb)} KiB [${handlerKb.join(', ')}], node -e 0 median ${median(nodeKb)} KiB [${nodeKb.join(', ')}]`);
  console.log(`  memory ratio handler/node: ${memRatio.toFixed(3)} (target < 0.25) ${memRatio < 0.25 ? 'OK' : 'MISSED'}`);
  if (latencyRatio > 1.2 || memRatio >= 0.25) process.exitCode = 1;
}

async function main(): Promise<void> {
  if (process.geteuid?.() !== 0) throw new Error('the handler bench changes core_pattern and must run as root');
  const handler = findHandler();
  const lock = await lockCorePattern();
  const originalPattern = readProc(CORE_PATTERN);
  const originalLimit = readProc(PIPE_LIMIT);
  const dir = fs.mkdtempSync(DIR_PREFIX);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    writeProc(CORE_PATTERN, originalPattern);
    writeProc(PIPE_LIMIT, originalLimit);
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    restore();
    lock.child.stdin?.end();
    fs.rmSync(dir, { recursive: true, force: true });
    process.kill(process.pid, signal);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await bench(dir, handler);
  } finally {
    restore();
    lock.child.stdin?.end();
    await lock.exited;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    fs.rmSync(dir, { recursive: true, force: true });
    const nowPattern = readProc(CORE_PATTERN);
    const nowLimit = readProc(PIPE_LIMIT);
    if (nowPattern !== originalPattern || nowLimit !== originalLimit) {
      throw new Error(`core_pattern is "${nowPattern}" (pipe limit ${nowLimit}) after the bench, not "${originalPattern}" (${originalLimit})`);
    }
  }
}

main().catch((e: unknown) => {
  console.error(`handler bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});

/**
 * morgue on a terminal, through a pseudo-terminal made by util-linux `script`: the login prompt
 * (the password not echoed), and the spinner — drawn while a slow answer is awaited, absent for a
 * quick one and on a terminal that reports no width.
 */

import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';

import test from 'ava';

import { packageRoot } from '../../ts/native/index.js';
import { type MockServer, sendJson, startMock, tempDir, TOKEN } from './helpers.js';

const MORGUE = path.join(packageRoot, 'bin', 'morgue');

function requireScript(): void {
  if (spawnSync('script', ['--version']).error) throw new Error('these tests need util-linux `script` to make a pseudo-terminal (apt-get install bsdutils)');
}

/** Runs `shellCommand` on a pty; when the output so far contains `step[0]`, types `step[1]`. */
function onPty(shellCommand: string, dir: string, steps: Array<[string, string]> = []): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', shellCommand, '/dev/null'], { env: { PATH: process.env.PATH, HOME: dir, MORGUE_CONFIG_DIR: dir, TERM: 'xterm' } });
    let out = '';
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`no exit within 30 s; output so far: ${JSON.stringify(out.slice(0, 2000))}`));
    }, 30_000);
    child.stdout.on('data', (d: Buffer) => {
      if (out.length < 1_000_000) out += d.toString();
      const next = steps[0];
      if (next && out.includes(next[0])) {
        steps.shift();
        child.stdin.write(next[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

function slowQueries(mock: MockServer, ms: number): void {
  mock.handle('/api/query', (_r, res) => {
    setTimeout(() => sendJson(res, 200, { response: { columns: [], values: [] }, _: { user: 'admin', universe: 'local', project: 'myproj', latency: '9 us' } }), ms);
  });
}

let mock: MockServer;
let dir: string;
test.before(async () => {
  requireScript();
  mock = await startMock();
  dir = tempDir();
});
test.after.always(async () => {
  await mock?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test.serial('login prompts for the user and the password, and does not echo the password', async (t) => {
  const run = await onPty(`${MORGUE} login ${mock.url}`, dir, [
    ['User: ', 'admin\n'],
    ['Password: ', 'hunter2\n'],
  ]);
  t.is(run.code, 0, run.out);
  t.is(mock.requests.at(-1)?.body.toString(), 'username=admin&password=hunter2');
  t.false(run.out.includes('hunter2'), run.out);
  t.true(run.out.includes('Logged in as admin'), run.out);
});

test.serial('Ctrl-D at the prompt is an error, not an empty password', async (t) => {
  const before = mock.requests.length;
  const run = await onPty(`${MORGUE} login ${mock.url}`, dir, [['User: ', '\u0004']]);
  t.is(run.code, 2, run.out);
  t.true(run.out.includes('morgue: login ended before a username and password were given'), run.out);
  t.is(mock.requests.length, before, 'nothing was sent');
});

test.serial('a slow answer shows the spinner on stderr, and it is cleared before the answer', async (t) => {
  const login = await onPty(`${MORGUE} login ${mock.url} --token=${TOKEN}`, dir);
  t.is(login.code, 0, login.out);
  slowQueries(mock, 1200);
  const slow = await onPty(`stty cols 80; ${MORGUE} list myproj`, dir);
  t.is(slow.code, 0, slow.out);
  t.regex(slow.out, /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏](\u001b\[39m)? Querying local\/myproj/);
  t.regex(slow.out, /\u001b\[0K(\u001b\[\?25h)?\u001b\[34madmin: local\/myproj as of 1M ago \[9 us\]/);

  slowQueries(mock, 0);
  const quick = await onPty(`stty cols 80; ${MORGUE} list myproj`, dir);
  t.is(quick.code, 0, quick.out);
  t.false(quick.out.includes('Querying'), quick.out);

  slowQueries(mock, 1200);
  const noWidth = await onPty(`stty cols 0; ${MORGUE} list myproj`, dir);
  t.is(noWidth.code, 0);
  t.false(noWidth.out.includes('Querying'), noWidth.out.slice(0, 500));
});

/**
 * coresnapd against the real object store: `bin/coroner serve` on loopback, its own coroner.cf,
 * a project created with `coroner project create` and routed to by a format rule; then the
 * command the daemon logs for each upload (`coroner -c ... put <project> <project> <file>`) run by
 * hand on the sent snapshot: the store answers with the same _rxid (it holds that uuid already).
 */

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import test from 'ava';

import { packageRoot } from '../../ts/native/index.js';
import { compileCrash, DaemonProcess, makeCore, runHandler, startWaiting, statusOf, testDir, uuidsIn, waitFor } from './helpers/env.js';

const CORONER = path.join(packageRoot, 'bin', 'coroner');
const root = testDir();
test.after.always(() => fs.rmSync(root, { recursive: true, force: true }));

test('crashes reach a real coroner, routed by project; the logged coroner put command finds them already stored', async (t) => {
  const exe = compileCrash(root);
  const special = compileCrash(root, 'special');
  const core = makeCore(exe, path.join(root, 'made'));
  const specialCore = makeCore(special, path.join(root, 'made-special'));
  const data = path.join(root, 'coroner-data');
  const server = spawn(CORONER, ['serve', '--data', data, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let serverOutput = '';
  server.stdout?.on('data', (c: Buffer) => (serverOutput += c.toString()));
  server.stderr?.on('data', (c: Buffer) => (serverOutput += c.toString()));
  const serverExit = new Promise((r) => server.once('exit', r));
  t.teardown(async () => {
    server.kill('SIGTERM');
    await serverExit;
  });
  await waitFor(() => `coroner to listen\n${serverOutput}`, () => /listening on http:\/\/127\.0\.0\.1:\d+/.test(serverOutput), 60_000);
  const coronerCf = path.join(data, 'coroner.cf');
  const created = execFileSync(CORONER, ['project', 'create', 'special', '--data', data], { encoding: 'utf8' });
  const token = /special = ([0-9a-f]{64})/.exec(created)?.[1];
  t.truthy(token, created);
  fs.appendFileSync(coronerCf, `special = ${token}\n`);

  const dir = path.join(root, 'e2e');
  fs.mkdirSync(dir, { mode: 0o755 });
  const archive = path.join(dir, 'archive');
  const conf = path.join(dir, 'coresnap.conf');
  fs.writeFileSync(conf, `archive.path = ${archive}\ncoroner.cf = ${coronerCf}\nformat.1 = special %e /special$\nformat.1 = blackhole\n`);
  const daemon = new DaemonProcess(conf);
  try {
    await daemon.waitForLog(/coresnapd started/);
    const spooled: string[] = [];
    for (const [program, programCore] of [[exe, core], [special, specialCore]] as const) {
      const proc = await startWaiting(program);
      try {
        t.is(runHandler(archive, programCore, proc.pid).code, 0);
      } finally {
        proc.kill('SIGKILL');
      }
      spooled.push(...uuidsIn(archive, 'pending').filter((u) => !spooled.includes(u)));
    }
    t.is(spooled.length, 2);
    for (const uuid of spooled) await daemon.waitForLog(new RegExp(`crash ${uuid} processed in \\d+ seconds?`));
    for (const uuid of spooled) {
      const status = statusOf(archive, uuid);
      const project = String(status?.project);
      t.is(project, uuid === spooled[0] ? 'blackhole' : 'special');
      t.regex(String(status?.rxid), /^[0-9a-f-]{36}$/);
      // The by-hand command from the log, on the sent snapshot: the store knows this uuid.
      const logged = new RegExp(`the same as: (coroner -c \\S+ put ${project} ${project}) ${archive}/sending/${uuid}`).exec(daemon.output);
      t.truthy(logged, daemon.output);
      const sentFile = path.join(archive, 'sent', uuid);
      const out = execFileSync(CORONER, ['-c', coronerCf, 'put', project, project, sentFile], { encoding: 'utf8' });
      t.is(out.trim(), `${sentFile}: ${status?.rxid}`);
    }
  } finally {
    await daemon.stop();
  }
});

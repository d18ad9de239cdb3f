// `bin/coroner serve` as a child process with `bin/coroner integration ...` next to it: pending
// deliveries survive kill -9, a crash acknowledged just before kill -9 is still announced, the
// CLI's add/list/log/remove/retry, and a real ptrace snapshot of a corpus core announced with its
// frames.

import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { verifySignature } from '../../ts/workflows/index.js';
import { corpusCase, corpusSnapshot, runBin, spawnServe, tempDir } from '../coroner/helpers.js';
import { crash, eventually, Receiver, submit } from './helpers.js';

const ENV = { CORONER_WORKFLOW_RETRY_MS: '150,400' };

async function coroner(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; json: any }> {
  const r = await runBin('coroner', args, { timeoutMs: 60_000 });
  let json: unknown;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, json };
}

async function submissionToken(dataDir: string): Promise<string> {
  const r = await coroner(['token', 'list', 'blackhole', '--data', dataDir, '--json']);
  if (r.code !== 0) throw new Error(`token list failed: ${r.stderr}`);
  return r.json[0].id as string;
}

test.serial('deliveries pending when coroner is killed go out after it restarts; a crash acknowledged just before kill -9 is announced', async (t) => {
  const dataDir = tempDir('coroner-workflows-restart-');
  const receiver = await Receiver.start();
  let serve = await spawnServe(dataDir, [], ENV);
  t.teardown(async () => {
    await serve.stop('SIGKILL');
    await receiver.stop();
  });
  const token = await submissionToken(dataDir);
  const added = await coroner(['integration', 'add', 'blackhole', '--type', 'webhook', '--url', receiver.url(), '--secret', 'restart-secret', '--data', dataDir, '--json']);
  t.is(added.code, 0, added.stderr);
  const id = added.json.id as number;
  await receiver.stop();

  const fps: string[] = [];
  for (let i = 0; i < 3; i++) fps.push((await submit(serve.url, token, crash([`before_restart_${i}`, 'main']))).fingerprint);
  await eventually('three pending deliveries, the first tried twice', async () => {
    const log = await coroner(['integration', 'log', 'blackhole', String(id), '--data', dataDir, '--json']);
    const ds = (log.json ?? []) as Array<{ status: string; attempts: number }>;
    return ds.length === 3 && ds.every((d) => d.status === 'pending') && ds[ds.length - 1]!.attempts >= 2 ? ds : undefined;
  });
  t.is(await serve.stop('SIGKILL'), null);

  await receiver.start();
  serve = await spawnServe(dataDir, [], ENV);
  const got = await receiver.waitFor(3);
  t.deepEqual(got.map((r) => r.json.fingerprint), fps);
  t.true(got.every((r) => verifySignature('restart-secret', r.body, r.headers['x-coresnap-signature'] as string)));

  // Acknowledged, then killed at once: the evaluation may not have run; the restart catches up.
  const late = await submit(serve.url, token, crash(['acknowledged_then_killed', 'main']));
  await serve.stop('SIGKILL');
  serve = await spawnServe(dataDir, [], ENV);
  const [announced] = await receiver.waitFor(1, 60_000, (r) => r.json.fingerprint === late.fingerprint);
  t.is(announced!.json.event, 'new-group');
  t.deepEqual(announced!.json.top_frames, ['acknowledged_then_killed', 'main']);

  const list = await coroner(['integration', 'list', 'blackhole', '--data', dataDir, '--json']);
  await eventually('the delivered count to settle', async () => {
    const l = await coroner(['integration', 'list', 'blackhole', '--data', dataDir, '--json']);
    return l.json[0].deliveries.pending === 0 || undefined;
  });
  t.is(list.code, 0);
  // At least once: every group announced (one in flight at the kill -9 may have come twice).
  const counts = new Map<string, number>();
  for (const r of receiver.received) counts.set(r.json.fingerprint, (counts.get(r.json.fingerprint) ?? 0) + 1);
  t.deepEqual([...counts.keys()].sort(), [...fps, late.fingerprint].sort());
});

test.serial('coroner integration add, list, log, retry and remove; mistakes exit 1 or 2 with a sentence', async (t) => {
  const dataDir = tempDir('coroner-workflows-cli-');
  const receiver = await Receiver.start();
  const serve = await spawnServe(dataDir, ['--public-url', 'https://crashes.example.org'], ENV);
  t.teardown(async () => {
    await serve.stop();
    await receiver.stop();
  });

  const add = await coroner(['integration', 'add', 'blackhole', '--type', 'webhook', '--url', receiver.url(), '--trigger', 'new-group', '--trigger', 'threshold:3/10m', '--data', dataDir]);
  t.is(add.code, 0, add.stderr);
  t.regex(add.stdout, /added integration 1 to blackhole: webhook http:\/\/127\.0\.0\.1:\d+\/hook on new-group, threshold:3\/10m/);
  const secret = /signing secret: ([0-9a-f]{48})/.exec(add.stdout)?.[1];
  t.truthy(secret, add.stdout);
  const jira = await coroner([
    'integration', 'add', 'blackhole', '--type', 'jira', '--url', 'https://example.atlassian.net', '--jira-project', 'CR', '--issue-type', 'Bug',
    '--user', 'bot@example.com', '--token', 'tok-123', '--trigger', 'regression', '--data', dataDir, '--json',
  ]);
  t.is(jira.code, 0, jira.stderr);
  t.deepEqual(jira.json.jira, { project_key: 'CR', issue_type: 'Bug', user: 'bot@example.com' });

  const list = await coroner(['integration', 'list', 'blackhole', '--data', dataDir]);
  t.is(list.code, 0);
  const lines = list.stdout.trim().split('\n');
  t.is(lines.length, 2);
  t.regex(lines[0]!, /^1 {2}webhook {2}http\S+ {2}new-group, threshold:3\/10m .*deliveries: 0 delivered, 0 pending, 0 failed$/);
  t.regex(lines[1]!, /^2 {2}jira {2}https:\/\/example\.atlassian\.net {2}regression {2}jira CR\/Bug as bot@example\.com/);
  t.false(list.stdout.includes('tok-123'));
  t.false(list.stdout.includes(secret!));

  // The running server picks the CLI's integration up.
  const token = await submissionToken(dataDir);
  const c = await submit(serve.url, token, crash(['cli_added', 'main']));
  const [msg] = await receiver.waitFor(1);
  t.true(verifySignature(secret!, msg!.body, msg!.headers['x-coresnap-signature'] as string));
  t.is(msg!.json.link, `https://crashes.example.org/#/p/blackhole/g/${c.fingerprint}`);
  await eventually('the delivery logged as delivered', async () => {
    const log = await coroner(['integration', 'log', 'blackhole', '1', '--data', dataDir]);
    return /delivered/.test(log.stdout) || undefined;
  });
  const log = await coroner(['integration', 'log', 'blackhole', '1', '--attempts', '--data', dataDir]);
  t.is(log.code, 0);
  t.regex(log.stdout, new RegExp(`^1  \\S+Z  new-group  ${c.fingerprint.slice(0, 16)}  delivered \\S+Z  attempts 1\\n    \\S+Z  200  \\d+ ms\\n$`));
  const retryDelivered = await coroner(['integration', 'retry', 'blackhole', '1', '1', '--data', dataDir]);
  t.is(retryDelivered.code, 1);
  t.regex(retryDelivered.stderr, /delivered already/);

  const mistakes: Array<[string[], number, RegExp]> = [
    [['integration', 'add', 'blackhole', '--type', 'pager', '--url', 'https://x.example'], 1, /not an integration type/],
    [['integration', 'add', 'blackhole', '--type', 'webhook', '--url', 'https://x.example', '--trigger', 'threshold:10/forever'], 1, /not a window/],
    [['integration', 'add', 'blackhole', '--type', 'jira', '--url', 'https://x.example'], 1, /Jira project key/],
    [['integration', 'add', 'nosuch', '--type', 'webhook', '--url', 'https://x.example'], 1, /no project "nosuch"/],
    [['integration', 'add', 'blackhole', '--url', 'https://x.example'], 2, /--type/],
    [['integration', 'remove', 'blackhole', '99'], 1, /no integration 99/],
    [['integration', 'log', 'blackhole', 'x'], 2, /positive whole number/],
  ];
  for (const [args, code, message] of mistakes) {
    const r = await coroner([...args, '--data', dataDir]);
    t.is(r.code, code, args.join(' '));
    t.regex(r.stderr, message, args.join(' '));
  }

  const removed = await coroner(['integration', 'remove', 'blackhole', '2', '--data', dataDir]);
  t.is(removed.code, 0);
  t.regex(removed.stdout, /removed integration 2 \(jira https:\/\/example\.atlassian\.net\) from blackhole/);
  const after = await coroner(['integration', 'list', 'blackhole', '--data', dataDir, '--json']);
  t.deepEqual(after.json.map((i: { id: number }) => i.id), [1]);
});

test.serial('a real ptrace snapshot of a corpus core is announced with its faulting frames', async (t) => {
  const dataDir = tempDir('coroner-workflows-core-');
  const receiver = await Receiver.start();
  const serve = await spawnServe(dataDir, [], ENV);
  t.teardown(async () => {
    await serve.stop();
    await receiver.stop();
  });
  const added = await coroner(['integration', 'add', 'blackhole', '--type', 'webhook', '--url', receiver.url(), '--secret', 's', '--data', dataDir]);
  t.is(added.code, 0, added.stderr);
  const snap = await corpusSnapshot('c-segv-O0', dataDir);
  const put = await runBin('coroner', ['-c', path.join(dataDir, 'coroner.cf'), 'put', 'blackhole', 'blackhole', snap]);
  t.is(put.code, 0, put.stderr);
  const [msg] = await receiver.waitFor(1);
  // The corpus's ground truth for the crashing thread: level3, level2, level1, main.
  const expected = JSON.parse(fs.readFileSync(path.join(corpusCase('c-segv-O0').dir, 'expected.json'), 'utf8')) as { crash_thread: { frames: Array<{ fn: string }> } };
  const frames = expected.crash_thread.frames.map((f) => f.fn);
  t.true(frames.length >= 4);
  t.is(msg!.json.event, 'new-group');
  t.deepEqual(msg!.json.top_frames.slice(0, frames.length), frames);
  t.true(verifySignature('s', msg!.body, msg!.headers['x-coresnap-signature'] as string));
});

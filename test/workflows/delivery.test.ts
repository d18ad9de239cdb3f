// Delivery: a receiver that is down or failing for a while gets every message once it is back;
// the log records every attempt; ingestion of 1,000 crashes of one group in 10 s gives exactly
// one new-group message and at most one threshold message per window.

import test from 'ava';
import { Agent, request } from 'undici';
import { verifySignature } from '../../ts/workflows/index.js';
import { api, crash, eventually, submit, withWorkflowServer } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.serial('a receiver down for a while gets every message after it returns, each signed, in order', async (t) => {
  const { receiver, s } = await withWorkflowServer(t);
  const add = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/blackhole/integrations', { type: 'webhook', url: receiver.url(), secret: 'k' });
  const id = add.json.integration.id as number;
  await receiver.stop(); // connection refused from now on

  const fps: string[] = [];
  for (let i = 0; i < 6; i++) fps.push((await submit(s.url, s.token, crash([`failure_${i}`, 'main']))).fingerprint);
  // The receiver is probed (and refuses) several times; all six wait.
  await eventually('three failed attempts', async () => {
    const log = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${id}/deliveries?limit=100`);
    const attempts = log.json.deliveries.reduce((n: number, d: { attempts: number }) => n + d.attempts, 0);
    return log.json.deliveries.length === 6 && attempts >= 3 ? log.json : undefined;
  });
  const pending = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${id}/deliveries?limit=100`);
  t.true(pending.json.deliveries.every((d: { status: string }) => d.status === 'pending'));
  const oldest = pending.json.deliveries[pending.json.deliveries.length - 1];
  t.true(oldest.attempts >= 3, `the oldest was tried ${oldest.attempts} times`);
  t.regex(oldest.last_error, /ECONNREFUSED|refused/i);
  // Only the head of the queue probes the dead receiver; the others wait behind it.
  t.true(pending.json.deliveries.slice(0, -1).every((d: { attempts: number }) => d.attempts === 0));
  const detail = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${id}/deliveries/${oldest.id}`);
  t.is(detail.json.delivery.attempt_log.length, oldest.attempts);
  t.is(detail.json.delivery.body.fingerprint, fps[0]);

  await sleep(500);
  await receiver.start(); // same port
  const got = await receiver.waitFor(6);
  await s.service.idle();
  t.deepEqual(got.map((r) => r.json.fingerprint), fps, 'every message, oldest first');
  t.true(got.every((r) => verifySignature('k', r.body, r.headers['x-coresnap-signature'] as string)));
  t.is(new Set(got.map((r) => r.headers['x-coresnap-delivery'])).size, 6);
  const done = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${id}/deliveries?limit=100`);
  t.true(done.json.deliveries.every((d: { status: string; last_status: number }) => d.status === 'delivered' && d.last_status === 200));
  const summary = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${id}`);
  t.deepEqual(summary.json.integration.deliveries, { pending: 0, delivered: 6, failed: 0 });
});

test.serial('5xx and 429 answers are retried; another 4xx is a final refusal that a retry can send again', async (t) => {
  const { receiver, s } = await withWorkflowServer(t);
  let failures = 3;
  let refuse = true;
  receiver.answer = (r) => {
    if (r.path === '/flaky' && failures > 0) {
      failures--;
      return failures === 1 ? { status: 429, headers: { 'retry-after': '0' } } : { status: 503, body: 'busy' };
    }
    if (r.path === '/gone' && refuse) return { status: 410, body: 'no such hook' };
    return { status: 204 };
  };
  const flaky = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/blackhole/integrations', { type: 'webhook', url: receiver.url('/flaky') });
  const gone = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/blackhole/integrations', { type: 'webhook', url: receiver.url('/gone') });
  const c = await submit(s.url, s.token, crash(['sometimes', 'main']));
  const [ok] = await receiver.waitFor(1, 60_000, (r) => r.path === '/flaky');
  t.is(ok!.json.fingerprint, c.fingerprint);
  await s.service.idle();
  const flakyLog = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${flaky.json.integration.id}/deliveries`);
  const d = flakyLog.json.deliveries[0];
  t.is(d.status, 'delivered');
  t.is(d.attempts, 4);
  const detail = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${flaky.json.integration.id}/deliveries/${d.id}`);
  t.deepEqual(detail.json.delivery.attempt_log.map((a: { status: number }) => a.status), [503, 429, 503, 204]);
  t.regex(detail.json.delivery.attempt_log[0].error, /HTTP 503: busy/);

  const goneLog = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${gone.json.integration.id}/deliveries`);
  const refused = goneLog.json.deliveries[0];
  t.is(refused.status, 'failed');
  t.is(refused.attempts, 1);
  t.is(refused.last_status, 410);
  t.is(receiver.received.filter((r) => r.path === '/gone').length, 0);
  // Someone fixed the receiver: a retry from the console sends it.
  refuse = false;
  const retry = await api(s.url, s.adminSession, 'POST', `/api/admin/projects/blackhole/integrations/${gone.json.integration.id}/deliveries/${refused.id}/retry`);
  t.is(retry.status, 200);
  const [late] = await receiver.waitFor(1, 60_000, (r) => r.path === '/gone');
  t.is(late!.json.fingerprint, c.fingerprint);
  await eventually('the retried delivery to be delivered', async () => {
    const log = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${gone.json.integration.id}/deliveries`);
    return log.json.deliveries[0].status === 'delivered' || undefined;
  });
  const again = await api(s.url, s.adminSession, 'POST', `/api/admin/projects/blackhole/integrations/${gone.json.integration.id}/deliveries/${refused.id}/retry`);
  t.is(again.status, 400);
  t.regex(again.json.error.message, /delivered already/);
});

test.serial('1,000 crashes of one group in 10 s: exactly one new-group message, at most one threshold message per window', async (t) => {
  const { receiver, s } = await withWorkflowServer(t);
  const agent = new Agent({ connections: 16 });
  t.teardown(() => agent.close());
  for (const [path, trigger] of [['/new', 'new-group'], ['/hour', 'threshold:100/1h'], ['/2s', 'threshold:50/2s']] as const) {
    const r = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/blackhole/integrations', { type: 'webhook', url: receiver.url(path), triggers: [trigger] });
    t.is(r.status, 200);
  }
  const body = JSON.stringify(crash(['hot_loop', 'worker', 'main']));
  const started = Date.now();
  let fingerprint = '';
  // 100 a second for 10 seconds, 10 at a time.
  for (let tick = 0; tick < 100; tick++) {
    const due = started + tick * 100;
    if (Date.now() < due) await sleep(due - Date.now());
    const answers = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const fresh = JSON.parse(body) as Record<string, unknown>;
        fresh.uuid = crypto.randomUUID();
        const res = await request(`${s.url}/post?format=json&_mod_sync=1&token=${s.token}`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(fresh), dispatcher: agent,
        });
        return { status: res.statusCode, json: (await res.body.json()) as { fingerprint: string } };
      }),
    );
    for (const a of answers) {
      t.is(a.status, 200);
      fingerprint ||= a.json.fingerprint;
      if (a.json.fingerprint !== fingerprint) t.fail('the crashes did not group together');
    }
  }
  const elapsed = Date.now() - started;
  t.true(elapsed < 12_000, `submitting took ${elapsed} ms`);
  t.is(await s.store.countObjects(s.project.id), 1000);
  await receiver.waitFor(1, 60_000, (r) => r.path === '/hour');
  await s.service.idle();
  const on = (path: string) => receiver.received.filter((r) => r.path === path);
  t.is(on('/new').length, 1);
  t.is(on('/new')[0]!.json.fingerprint, fingerprint);
  t.is(on('/hour').length, 1);
  t.is(on('/hour')[0]!.json.threshold.crashes_in_window, 100);
  // 50 in 2 s, 100 crashes a second: it fires at most once per 2 s window, so 4 to 6 times in 10 s.
  const fast = on('/2s').map((r) => r.json.last_seen as number).sort((a, b) => a - b);
  t.true(fast.length >= 4 && fast.length <= 6, `${fast.length} threshold messages for 50/2s`);
  for (let i = 1; i < fast.length; i++) t.true(fast[i]! - fast[i - 1]! >= 2, `messages ${i - 1} and ${i} are ${fast[i]! - fast[i - 1]!} s apart`);
  const group = await s.service.workflows.getGroups(s.project.id, [fingerprint]);
  t.is(group.get(fingerprint)?.count, 1000);
});

// Each trigger fires once for its event and not for the others, against real receivers on
// loopback, through a real coroner (submissions over HTTP, resolve through /api/query).

import test from 'ava';
import { request } from 'undici';
import { verifySignature } from '../../ts/workflows/index.js';
import { api, crash, Receiver, startWorkflowServer, submit, withWorkflowServer } from './helpers.js';

async function resolveGroup(base: string, session: string, fingerprint: string): Promise<void> {
  const res = await request(`${base}/api/query?universe=local&project=blackhole`, {
    method: 'POST',
    headers: { 'x-coroner-token': session, 'content-type': 'application/json' },
    body: JSON.stringify({ filter: [{ fingerprint: [['equal', fingerprint]] }], set: { state: 'resolved' } }),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`resolving failed (${res.statusCode}): ${text}`);
}

async function groupStateOverApi(base: string, session: string, fingerprint: string): Promise<string> {
  const res = await request(`${base}/api/query?universe=local&project=blackhole`, {
    method: 'POST',
    headers: { 'x-coroner-token': session, 'content-type': 'application/json' },
    body: JSON.stringify({ filter: [{ fingerprint: [['equal', fingerprint]] }], select: ['state'], limit: 1 }),
  });
  const json = (await res.body.json()) as { response: { values: Array<[string, string[]]> } } & Record<string, unknown>;
  return JSON.stringify(json.response);
}

test.serial('new-group, threshold and regression each fire once for their event and never for the others', async (t) => {
  const { receiver, s } = await withWorkflowServer(t, { publicUrl: 'https://coroner.example.com' });
  const add = async (path: string, trigger: string) => {
    const r = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/blackhole/integrations', { type: 'webhook', url: receiver.url(path), secret: `secret-${path}`, triggers: [trigger] });
    t.is(r.status, 200, JSON.stringify(r.json));
    return r.json.integration.id as number;
  };
  await add('/new', 'new-group');
  await add('/threshold', 'threshold:5/1h');
  await add('/regression', 'regression');
  const on = (path: string) => receiver.received.filter((r) => r.path === path);

  // Three crashes of group A, one of group B: two new groups, nothing else.
  const a1 = await submit(s.url, s.token, crash(['parse_header', 'read_request', 'main']));
  await submit(s.url, s.token, crash(['parse_header', 'read_request', 'main']));
  await submit(s.url, s.token, crash(['parse_header', 'read_request', 'main']));
  const b = await submit(s.url, s.token, crash(['flush_cache', 'main']));
  t.not(a1.fingerprint, b.fingerprint);
  await receiver.waitFor(2, 60_000, (r) => r.path === '/new');
  await s.service.idle();
  t.deepEqual(on('/new').map((r) => r.json.fingerprint).sort(), [a1.fingerprint, b.fingerprint].sort());
  t.is(on('/threshold').length, 0);
  t.is(on('/regression').length, 0);

  const first = on('/new').find((r) => r.json.fingerprint === a1.fingerprint)!;
  t.true(verifySignature('secret-/new', first.body, first.headers['x-coresnap-signature'] as string));
  t.false(verifySignature('secret-/threshold', first.body, first.headers['x-coresnap-signature'] as string));
  t.is(first.headers['x-coresnap-event'], 'new-group');
  t.is(first.json.event, 'new-group');
  t.is(first.json.project, 'blackhole');
  t.is(first.json.universe, 'local');
  t.deepEqual(first.json.top_frames, ['parse_header', 'read_request', 'main']);
  t.is(first.json.count, 1);
  t.is(first.json.object, a1.object);
  t.is(first.json.link, `https://coroner.example.com/#/p/blackhole/g/${a1.fingerprint}`);
  t.is(first.json.application, 'demo');
  t.true(Number.isInteger(first.json.first_seen) && first.json.first_seen === first.json.last_seen);
  t.is(first.json.delivery, first.headers['x-coresnap-delivery']);

  // Two more of A make five within the hour: one threshold message, still no other.
  await submit(s.url, s.token, crash(['parse_header', 'read_request', 'main']));
  await submit(s.url, s.token, crash(['parse_header', 'read_request', 'main']));
  const [th] = await receiver.waitFor(1, 60_000, (r) => r.path === '/threshold');
  t.is(th!.json.event, 'threshold');
  t.is(th!.json.fingerprint, a1.fingerprint);
  t.deepEqual(th!.json.threshold, { count: 5, window: '1h', window_seconds: 3600, crashes_in_window: 5 });
  t.is(th!.json.count, 5);
  t.true(verifySignature('secret-/threshold', th!.body, th!.headers['x-coresnap-signature'] as string));
  // Five more within the same window: no second threshold message (once per window).
  for (let i = 0; i < 5; i++) await submit(s.url, s.token, crash(['parse_header', 'read_request', 'main']));
  await s.service.idle();
  t.is(on('/threshold').length, 1);
  t.is(on('/new').length, 2);
  t.is(on('/regression').length, 0);

  // Resolve A; its next crash is a regression (once) and opens the group again.
  await resolveGroup(s.url, s.adminSession, a1.fingerprint);
  t.is(await s.store.getGroupState(s.project.id, a1.fingerprint), 'resolved');
  await submit(s.url, s.token, crash(['flush_cache', 'main'])); // B was never resolved: no regression
  await submit(s.url, s.token, crash(['parse_header', 'read_request', 'main']));
  const [reg] = await receiver.waitFor(1, 60_000, (r) => r.path === '/regression');
  t.is(reg!.json.event, 'regression');
  t.is(reg!.json.fingerprint, a1.fingerprint);
  t.is(reg!.json.count, 11);
  t.true(verifySignature('secret-/regression', reg!.body, reg!.headers['x-coresnap-signature'] as string));
  await s.service.idle();
  t.is(await s.store.getGroupState(s.project.id, a1.fingerprint), 'open');
  t.regex(await groupStateOverApi(s.url, s.adminSession, a1.fingerprint), /"open"/);
  // The group is open again: further crashes are no regression.
  await submit(s.url, s.token, crash(['parse_header', 'read_request', 'main']));
  await s.service.idle();
  t.is(on('/regression').length, 1);
  t.is(on('/new').length, 2);
  t.is(on('/threshold').length, 1);
});

test.serial('an ignored group stays quiet at its threshold; a project without integrations still reopens resolved groups', async (t) => {
  const { receiver, s } = await withWorkflowServer(t);
  const quiet = await submit(s.url, s.token, crash(['noisy_but_known', 'main']));
  const fixed = await submit(s.url, s.token, crash(['fixed_bug', 'main']));
  await s.service.idle();
  await s.store.setGroupState(s.project.id, quiet.fingerprint, 'ignored');
  await s.store.setGroupState(s.project.id, fixed.fingerprint, 'resolved');
  // No integration yet: the regression still opens the group.
  await submit(s.url, s.token, crash(['fixed_bug', 'main']));
  await s.service.idle();
  t.is(await s.store.getGroupState(s.project.id, fixed.fingerprint), 'open');

  const r = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/blackhole/integrations', { type: 'webhook', url: receiver.url(), triggers: ['threshold:3/1h', 'new-group'] });
  t.is(r.status, 200);
  for (let i = 0; i < 5; i++) await submit(s.url, s.token, crash(['noisy_but_known', 'main']));
  // A known group is not new for an integration added later; an ignored one does not alert.
  await s.service.idle();
  t.is(receiver.received.length, 0);
  // A group new since the integration was added does alert.
  const fresh = await submit(s.url, s.token, crash(['brand_new', 'main']));
  const [got] = await receiver.waitFor(1);
  t.is(got!.json.fingerprint, fresh.fingerprint);
  t.is(got!.json.event, 'new-group');
  t.is(await s.store.getGroupState(s.project.id, quiet.fingerprint), 'ignored');
});

test.serial('Slack and Jira receivers get their own formats, signed', async (t) => {
  const slack = await Receiver.start();
  const jira = await Receiver.start();
  jira.answer = () => ({ status: 201, body: JSON.stringify({ id: '10001', key: 'CRASH-1' }), headers: { 'content-type': 'application/json' } });
  const s = await startWorkflowServer();
  t.teardown(async () => {
    await s.close();
    await slack.stop();
    await jira.stop();
  });
  const a = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/blackhole/integrations', { type: 'slack', url: slack.url('/services/T000/B000/XXXX') });
  t.is(a.status, 200);
  const slackSecret = a.json.secret as string;
  const j = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/blackhole/integrations', {
    type: 'jira',
    url: `http://127.0.0.1:${jira.port}/jira`,
    secret: 'jira-secret',
    jira: { project_key: 'CRASH', issue_type: 'Task', user: 'bot@example.com', token: 'api-token' },
  });
  t.is(j.status, 200, JSON.stringify(j.json));
  t.deepEqual(j.json.integration.jira, { project_key: 'CRASH', issue_type: 'Task', user: 'bot@example.com' });
  t.false(JSON.stringify(j.json.integration).includes('api-token'));

  const c = await submit(s.url, s.token, crash(['decode_frame', 'pump', 'main']));
  const [msg] = await slack.waitFor(1);
  t.is(msg!.path, '/services/T000/B000/XXXX');
  t.is(typeof msg!.json.text, 'string');
  t.true(msg!.json.text.includes('New crash group in blackhole: decode_frame'));
  t.true(Array.isArray(msg!.json.blocks));
  t.true(JSON.stringify(msg!.json.blocks).includes('decode_frame'));
  t.true(verifySignature(slackSecret, msg!.body, msg!.headers['x-coresnap-signature'] as string));

  const [issue] = await jira.waitFor(1);
  t.is(issue!.method, 'POST');
  t.is(issue!.path, '/jira/rest/api/2/issue');
  t.is(issue!.headers.authorization, `Basic ${Buffer.from('bot@example.com:api-token').toString('base64')}`);
  t.deepEqual(issue!.json.fields.project, { key: 'CRASH' });
  t.deepEqual(issue!.json.fields.issuetype, { name: 'Task' });
  t.is(issue!.json.fields.summary, 'New crash group in blackhole: decode_frame');
  t.true(issue!.json.fields.description.includes(c.fingerprint));
  t.true(verifySignature('jira-secret', issue!.body, issue!.headers['x-coresnap-signature'] as string));
  await s.service.idle();
  const log = await api(s.url, s.adminSession, 'GET', `/api/admin/projects/blackhole/integrations/${j.json.integration.id}/deliveries`);
  t.is(log.json.deliveries.length, 1);
  t.is(log.json.deliveries[0].status, 'delivered');
  t.is(log.json.deliveries[0].last_status, 201);
});

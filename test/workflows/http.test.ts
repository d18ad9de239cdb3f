// The integrations' admin endpoints as the web console uses them: superuser only, validation,
// the test message, the delivery log with paging, projects deleted with their integrations.

import test from 'ava';
import { createProject, createUser } from '../../ts/coroner/admin.js';
import { startSession } from '../../ts/server/auth.js';
import { verifySignature } from '../../ts/workflows/index.js';
import { api, crash, eventually, startWorkflowServer, submit, withWorkflowServer } from './helpers.js';

const BASE = '/api/admin/projects/blackhole/integrations';

test.serial('only a superuser manages integrations; bad requests get 400 and unknown ones 404', async (t) => {
  const s = await startWorkflowServer();
  t.teardown(() => s.close());
  const universe = (await s.store.getUniverse('local'))!;
  const plain = await createUser(s.store, universe, { username: 'dev', password: 'a long password' });
  const devSession = (await startSession(s.store, plain)).token;

  t.is((await api(s.url, 'nope', 'GET', BASE)).status, 401);
  const forbidden = await api(s.url, devSession, 'GET', BASE);
  t.is(forbidden.status, 403);
  t.is((await api(s.url, devSession, 'POST', BASE, { type: 'webhook', url: 'https://x.example' })).status, 403);
  t.is((await api(s.url, s.adminSession, 'GET', '/api/admin/projects/nosuch/integrations')).status, 404);

  const bad: Array<[unknown, RegExp]> = [
    [[], /JSON object/],
    [{ url: 'https://x.example' }, /"type" is required/],
    [{ type: 'webhook' }, /"url" is required/],
    [{ type: 'webhook', url: 'https://x.example', triggers: 'new-group' }, /list of strings/],
    [{ type: 'webhook', url: 'https://x.example', trigger: 'threshold:5' }, /not a trigger/],
    [{ type: 'webhook', url: 'gopher://x.example' }, /http/],
    [{ type: 'jira', url: 'https://x.example', jira: { project_key: 'X' } }, /Jira user.*token/],
    [{ type: 'webhook', url: 'https://x.example', secret: 5 }, /"secret" must be a string/],
  ];
  for (const [body, message] of bad) {
    const r = await api(s.url, s.adminSession, 'POST', BASE, body);
    t.is(r.status, 400, JSON.stringify(body));
    t.regex(r.json.error.message, message, JSON.stringify(body));
  }
  t.deepEqual((await api(s.url, s.adminSession, 'GET', BASE)).json, { integrations: [] });

  const created = await api(s.url, s.adminSession, 'POST', BASE, { type: 'webhook', url: 'https://x.example/hook', trigger: 'threshold:10/5m' });
  t.is(created.status, 200);
  t.like(created.json.integration, { id: 1, project: 'blackhole', type: 'webhook', url: 'https://x.example/hook', triggers: ['threshold:10/5m'] });
  t.regex(created.json.secret, /^[0-9a-f]{48}$/);
  const one = await api(s.url, s.adminSession, 'GET', `${BASE}/1`);
  t.deepEqual(one.json.integration.deliveries, { pending: 0, delivered: 0, failed: 0 });
  t.false(JSON.stringify(one.json).includes(created.json.secret));
  for (const path of [`${BASE}/2`, `${BASE}/abc`, `${BASE}/1/deliveries/5`]) t.is((await api(s.url, s.adminSession, 'GET', path)).status, 404, path);
  t.is((await api(s.url, s.adminSession, 'GET', `${BASE}/1/deliveries?limit=0`)).status, 400);
  // An integration of one project is not reachable through another.
  await createProject(s.store, universe, 'other', { withToken: false });
  t.is((await api(s.url, s.adminSession, 'GET', '/api/admin/projects/other/integrations/1')).status, 404);
  t.is((await api(s.url, s.adminSession, 'DELETE', '/api/admin/projects/other/integrations/1')).status, 404);

  const deleted = await api(s.url, s.adminSession, 'DELETE', `${BASE}/1`);
  t.is(deleted.status, 200);
  t.is(deleted.json.deleted.id, 1);
  t.is((await api(s.url, s.adminSession, 'DELETE', `${BASE}/1`)).status, 404);
});

test.serial('a test message is delivered and signed; the delivery log pages newest first', async (t) => {
  const { receiver, s } = await withWorkflowServer(t);
  const created = await api(s.url, s.adminSession, 'POST', BASE, { type: 'webhook', url: receiver.url(), secret: 'hush' });
  const id = created.json.integration.id as number;
  const sent = await api(s.url, s.adminSession, 'POST', `${BASE}/${id}/test`);
  t.is(sent.status, 200);
  t.is(sent.json.delivery.event, 'test');
  const [msg] = await receiver.waitFor(1);
  t.is(msg!.headers['x-coresnap-event'], 'test');
  t.is(msg!.json.project, 'blackhole');
  t.true(verifySignature('hush', msg!.body, msg!.headers['x-coresnap-signature'] as string));

  for (let i = 0; i < 4; i++) await submit(s.url, s.token, crash([`paged_${i}`, 'main']));
  await receiver.waitFor(5);
  await eventually('five delivered', async () => {
    const l = await api(s.url, s.adminSession, 'GET', `${BASE}/${id}`);
    return l.json.integration.deliveries.delivered === 5 || undefined;
  });
  const page1 = await api(s.url, s.adminSession, 'GET', `${BASE}/${id}/deliveries?limit=2`);
  t.is(page1.json.deliveries.length, 2);
  t.deepEqual(page1.json.deliveries.map((d: { id: number }) => d.id), [5, 4]);
  t.is(page1.json.next_before, 4);
  const page2 = await api(s.url, s.adminSession, 'GET', `${BASE}/${id}/deliveries?limit=2&before=4`);
  t.deepEqual(page2.json.deliveries.map((d: { id: number }) => d.id), [3, 2]);
  const page3 = await api(s.url, s.adminSession, 'GET', `${BASE}/${id}/deliveries?limit=2&before=2`);
  t.deepEqual(page3.json.deliveries.map((d: { id: number; event: string }) => [d.id, d.event]), [[1, 'test']]);
  t.is(page3.json.next_before, undefined);
  const detail = await api(s.url, s.adminSession, 'GET', `${BASE}/${id}/deliveries/5`);
  t.is(detail.json.delivery.body.top_frames[0], 'paged_3');
  t.is(detail.json.delivery.attempt_log.length, 1);
  t.is(detail.json.delivery.attempt_log[0].status, 200);
});

test.serial('deleting a project forgets its integrations and their queue', async (t) => {
  const { receiver, s } = await withWorkflowServer(t);
  const universe = (await s.store.getUniverse('local'))!;
  const { project } = await createProject(s.store, universe, 'doomed', { withToken: false });
  const r = await api(s.url, s.adminSession, 'POST', '/api/admin/projects/doomed/integrations', { type: 'webhook', url: receiver.url() });
  t.is(r.status, 200);
  t.is((await s.service.workflows.listIntegrations(project.id)).length, 1);
  const del = await api(s.url, s.adminSession, 'DELETE', '/api/admin/projects/doomed');
  t.is(del.status, 200);
  await eventually('the integration forgotten', async () => ((await s.service.workflows.listIntegrations(project.id)).length === 0 ? true : undefined));
  t.is(await s.service.workflows.getCursor(project.id), undefined);
});

// The pieces without a server: trigger syntax, signatures (RFC 4231 vectors), the sliding window,
// and the Slack / Jira bodies.

import test from 'ava';
import {
  addToWindow,
  deliveryRequest,
  formatTrigger,
  jiraIssue,
  parseTrigger,
  parseWindow,
  signBody,
  slackMessage,
  TriggerError,
  validateIntegration,
  verifySignature,
  type GroupEvent,
  type Integration,
} from '../../ts/workflows/index.js';

test('triggers parse and print back the same', (t) => {
  t.deepEqual(parseTrigger('new-group'), { kind: 'new-group' });
  t.deepEqual(parseTrigger('regression'), { kind: 'regression' });
  t.deepEqual(parseTrigger('threshold:100/10m'), { kind: 'threshold', count: 100, windowSeconds: 600 });
  t.deepEqual(parseTrigger('threshold:5/1h'), { kind: 'threshold', count: 5, windowSeconds: 3600 });
  for (const text of ['new-group', 'regression', 'threshold:100/10m', 'threshold:3/90s', 'threshold:1/1d']) t.is(formatTrigger(parseTrigger(text)), text);
  t.is(parseWindow('30s'), 30);
  t.is(parseWindow('2d'), 172800);
});

test('bad triggers say what is expected', (t) => {
  for (const bad of ['threshold:0/1m', 'threshold:10/0m', 'threshold:10/5', 'threshold:10/31d', 'threshold:x/1m', 'sometimes', 'threshold:10']) {
    const err = t.throws(() => parseTrigger(bad), { instanceOf: TriggerError });
    t.regex(err!.message, /trigger|window|threshold/i, bad);
  }
});

test('signatures are HMAC-SHA256 (RFC 4231 test cases 2 and 1) and verify only the same body and key', (t) => {
  t.is(signBody('Jefe', 'what do ya want for nothing?'), 'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  const key = Buffer.alloc(20, 0x0b).toString('latin1');
  t.is(signBody(key, 'Hi There'), 'sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7');
  const sig = signBody('s3cret', '{"a":1}');
  t.true(verifySignature('s3cret', '{"a":1}', sig));
  t.false(verifySignature('s3cret', '{"a":2}', sig));
  t.false(verifySignature('other', '{"a":1}', sig));
  t.false(verifySignature('s3cret', '{"a":1}', undefined));
  t.false(verifySignature('s3cret', '{"a":1}', 'sha256=00'));
});

test('the sliding window counts crashes of the last WINDOW seconds only', (t) => {
  const state = { integrationId: 1, fingerprint: 'f', buckets: [] as Array<[number, number]>, expiresAt: 0 };
  // 10 s window: one-second buckets, exact.
  for (let i = 0; i < 5; i++) t.is(addToWindow(state, 1000, 10), i + 1);
  t.is(addToWindow(state, 1009, 10), 6); // 1000 is still inside (1009 - 10, 1009]
  t.is(addToWindow(state, 1010, 10), 2); // 1000 fell out: 1009 and 1010 remain
  t.is(addToWindow(state, 2000, 10), 1);
  t.is(state.expiresAt, 2010);
  // 1 h window: 120 s buckets, at most ~30 of them.
  const wide = { integrationId: 1, fingerprint: 'g', buckets: [] as Array<[number, number]>, expiresAt: 0 };
  let n = 0;
  for (let s = 0; s < 7200; s += 10) n = addToWindow(wide, 100_000 + s, 3600);
  t.true(wide.buckets.length <= 31, `${wide.buckets.length} buckets`);
  // 360 crashes in the last hour, plus at most one bucket's worth from just before it.
  t.true(n >= 360 && n <= 360 + 12, `${n} in the window`);
});

const event: GroupEvent = {
  event: 'new-group',
  trigger: 'new-group',
  universe: 'local',
  project: 'blackhole',
  fingerprint: 'ab'.repeat(32),
  link: 'http://coroner.example:6097/#/p/blackhole/g/' + 'ab'.repeat(32),
  top_frames: ['level3', 'level2', 'level1', 'main'],
  classifiers: ['SIGSEGV'],
  count: 1,
  first_seen: 1_700_000_000,
  last_seen: 1_700_000_000,
  object: '1f',
  application: 'crasher',
};

test('a Slack message has text and blocks that link to the group', (t) => {
  const m = slackMessage(event);
  t.true(m.text.startsWith('New crash group in blackhole: level3'));
  t.true(m.text.includes(`<${event.link}|`));
  t.true(Array.isArray(m.blocks) && m.blocks.length >= 3);
  const all = JSON.stringify(m.blocks);
  for (const needle of ['level3', 'level2', 'main', event.fingerprint, '2023-11-14T22:13:20Z', 'crasher', 'SIGSEGV']) t.true(all.includes(needle), needle);
});

test('a Jira issue names the project, issue type, summary and the group in the description', (t) => {
  const issue = jiraIssue(event, { projectKey: 'CRASH', issueType: 'Bug', user: 'u@example.com', token: 't' });
  t.deepEqual(issue.fields.project, { key: 'CRASH' });
  t.deepEqual(issue.fields.issuetype, { name: 'Bug' });
  t.is(issue.fields.summary, 'New crash group in blackhole: level3');
  const description = issue.fields.description as string;
  for (const needle of ['level3', 'main', event.fingerprint, event.link, '{noformat}']) t.true(description.includes(needle), needle);
  // Summaries over 255 characters are cut (Jira refuses them).
  const long = jiraIssue({ ...event, top_frames: ['x'.repeat(400)] }, undefined);
  t.is((long.fields.summary as string).length, 255);
});

test('the Jira request goes to /rest/api/2/issue with basic authentication and a signature', (t) => {
  const integration: Integration = {
    id: 1, projectId: 1, type: 'jira', url: 'https://jira.example.com/', secret: 'k', triggers: [{ kind: 'new-group' }], createdAt: 0,
    jira: { projectKey: 'CRASH', issueType: 'Bug', user: 'bot@example.com', token: 'tok' },
  };
  const r = deliveryRequest(integration, { uuid: 'u-1', event: 'new-group', body: '{"fields":{}}' });
  t.is(r.url, 'https://jira.example.com/rest/api/2/issue');
  t.is(r.headers.authorization, `Basic ${Buffer.from('bot@example.com:tok').toString('base64')}`);
  t.true(verifySignature('k', r.body, r.headers['x-coresnap-signature']));
  t.is(r.headers['x-coresnap-delivery'], 'u-1');
});

test('integrations are validated before they are stored', (t) => {
  const ok = validateIntegration({ type: 'webhook', url: 'https://hooks.example.com/x' });
  t.deepEqual(ok.triggers, [{ kind: 'new-group' }]);
  t.true(ok.secretGenerated);
  t.regex(ok.secret, /^[0-9a-f]{48}$/);
  t.false(validateIntegration({ type: 'slack', url: 'https://hooks.slack.com/x', secret: 'mine' }).secretGenerated);
  const cases: Array<[Parameters<typeof validateIntegration>[0], RegExp]> = [
    [{ type: 'pager', url: 'https://x' }, /not an integration type/],
    [{ type: 'webhook', url: 'not a url' }, /not a URL/],
    [{ type: 'webhook', url: 'ftp://example.com/' }, /http/],
    [{ type: 'webhook', url: 'https://u:p@example.com/' }, /credentials/],
    [{ type: 'webhook', url: 'https://example.com/', triggers: ['threshold:1/1m', 'threshold:2/1h'] }, /one threshold/],
    [{ type: 'webhook', url: 'https://example.com/', triggers: ['often'] }, /not a trigger/],
    [{ type: 'jira', url: 'https://example.atlassian.net' }, /Jira project key.*user.*token/],
    [{ type: 'webhook', url: 'https://example.com/', jira: { projectKey: 'X' } }, /only go with --type jira/],
  ];
  for (const [input, message] of cases) t.throws(() => validateIntegration(input), { message }, JSON.stringify(input));
  const jira = validateIntegration({ type: 'jira', url: 'https://example.atlassian.net', jira: { projectKey: 'CR', user: 'u', token: 't' } });
  t.deepEqual(jira.jira, { projectKey: 'CR', issueType: 'Bug', user: 'u', token: 't' });
});

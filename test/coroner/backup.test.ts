/**
 * `coroner backup <dir>` while the server takes crashes: the copy is a consistent data folder
 * (integrity check, every crash of its snapshot with its body and attachments, the big bodies'
 * blob files, coroner.cf), a server runs on it as is, and it refuses to overwrite anything.
 */

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import test from 'ava';
import { openSqliteStore } from '../../ts/store/sqlite.js';
import { http, report, runBin, startServer, tempDir } from './helpers.js';

test('a backup taken under load is a data folder that serves every crash it holds, big bodies and attachments included', async (t) => {
  const s = await startServer();
  t.teardown(() => s.close());
  const submit = (body: unknown) =>
    http(`${s.url}/post?format=json&token=${s.token}`, { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  // A report over the inline limit (256 KiB) lives in a blob file; one more gets an attachment.
  const big = await submit(report({ uuid: undefined, attributes: { big: 'y'.repeat(300 * 1024) } }));
  t.is(big.status, 200, big.text);
  const withAttachment = await submit(report({ uuid: undefined }));
  const attached = await http(`${s.url}/post?token=${s.token}&object=${withAttachment.json._rxid}&attachment_name=notes.txt`, { body: 'attached words' });
  t.is(attached.status, 200, attached.text);
  for (let i = 0; i < 20; i++) t.is((await submit(report({ uuid: undefined, attributes: { n: i } }))).status, 200);
  // Some tens of megabytes, so that the copy takes long enough for many commits to land during it.
  const filler = 'f'.repeat(30 * 1024);
  for (let k = 0; k < 20; k++) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => s.store.insertCrash({
      projectId: s.project.id, uuid: randomUUID(), timestamp: 1_700_000_000, fingerprint: 'f'.repeat(64), callstack: ['filler'], classifiers: [],
      attributes: { k, j }, format: 'json', processed: true, body: Buffer.from(`{"filler":"${filler}"}`), contentType: 'application/json', attachments: [],
    })));
  }
  const before = await s.store.countObjects(s.project.id);

  // Submissions keep coming while the backup runs.
  let stop = false;
  let during = 0;
  const load = (async () => {
    while (!stop) if ((await submit(report({ uuid: undefined }))).status === 200) during++;
  })();
  const dest = path.join(tempDir('coroner-backup-'), 'copy');
  t.teardown(() => fs.rmSync(path.dirname(dest), { recursive: true, force: true }));
  const run = await runBin('coroner', ['backup', dest, '--data', s.dataDir, '--json']);
  stop = true;
  await load;
  t.is(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  t.deepEqual(result.databases, ['coroner.db', 'workflows.db']);
  t.is(result.blobFiles, 1);
  t.is(result.missingBlobs, 0);
  t.true(during > 0, 'crashes were taken while the backup ran');

  const check = new Database(path.join(dest, 'coroner.db'), { readonly: true });
  t.is((check.pragma('integrity_check') as Array<{ integrity_check: string }>)[0]!.integrity_check, 'ok');
  check.close();
  t.is(fs.readFileSync(path.join(dest, 'coroner.cf'), 'utf8'), fs.readFileSync(path.join(s.dataDir, 'coroner.cf'), 'utf8'));
  // For the owner only: the copy holds password hashes and tokens.
  for (const f of ['', 'coroner.db', 'workflows.db', 'coroner.cf']) t.is(fs.statSync(path.join(dest, f)).mode & 0o077, 0, `${f || 'the folder'} is private`);

  // Every crash in the copy reads back whole.
  const copy = await openSqliteStore({ dataDir: dest });
  try {
    const n = await copy.countObjects(s.project.id);
    t.true(n >= before && n <= before + during, `${n} crashes in the copy (${before} before it began, ${during} during it)`);
    let bodies = 0;
    for await (const o of copy.scanObjects(s.project.id)) {
      const body = await copy.getReportBody(s.project.id, o.id);
      t.truthy(body, `crash ${o.id} has its body`);
      bodies++;
      if (o.rxid === big.json._rxid) t.true(body!.body.length > 300 * 1024);
      if (o.rxid === withAttachment.json._rxid) {
        const [a] = await copy.listAttachments(s.project.id, o.id);
        t.is(Buffer.from((await copy.getAttachment(s.project.id, o.id, a!.id))!.data).toString(), 'attached words');
      }
    }
    t.is(bodies, n);
  } finally {
    await copy.close();
  }

  // A server runs on the copy as is.
  const served = await startServer({ dataDir: dest });
  t.teardown(() => served.close());
  const listed = await http(`${served.url}/api/query?universe=local&project=blackhole`, {
    body: JSON.stringify({ fold: { fingerprint: [['unique']] } }),
    headers: { 'content-type': 'application/json', 'x-coroner-token': served.adminSession },
  });
  t.is(listed.status, 200, listed.text);

  // It never writes over anything, nor into the folder it copies.
  const again = await runBin('coroner', ['backup', dest, '--data', s.dataDir]);
  t.not(again.code, 0);
  t.regex(again.stderr, /already exists and is not an empty folder/);
  const inside = await runBin('coroner', ['backup', path.join(s.dataDir, 'b'), '--data', s.dataDir]);
  t.regex(inside.stderr, /cannot go inside the data folder/);
});

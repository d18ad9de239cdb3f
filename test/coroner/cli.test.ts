/**
 * The `coroner` command as a user runs it: `serve` as a child process (first start, coroner.cf,
 * restart after SIGKILL losing nothing acknowledged), `put` of real ptrace snapshots with the
 * coroner.cf that serve wrote, and the admin commands on the store directly.
 */

import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import ini from 'ini';
import { openSqliteStore } from '../../ts/store/sqlite.js';
import { ADMIN_PASSWORD, corpusSnapshot, execFileP, http, report, runBin, spawnServe, tempDir } from './helpers.js';

async function countIn(dataDir: string, project = 'blackhole'): Promise<number> {
  const store = await openSqliteStore({ dataDir, workers: false });
  try {
    const u = (await store.getUniverse('local'))!;
    const p = (await store.getProject(u.id, project))!;
    return await store.countObjects(p.id);
  } finally {
    await store.close();
  }
}

test('serve: first start creates admin, blackhole and coroner.cf; put uploads real snapshots with it; -u unlinks', async (t) => {
  const data = tempDir();
  const server = await spawnServe(data, [], { CORONER_ADMIN_PASSWORD: '' });
  try {
    const printed = /admin password: (\S+)/.exec(server.output());
    t.truthy(printed, `a generated password is printed once:\n${server.output()}`);
    const cfPath = path.join(data, 'coroner.cf');
    const cf = ini.parse(fs.readFileSync(cfPath, 'utf8'));
    t.is(cf.universe.name, 'local');
    t.is(cf.universe.write, server.url);
    t.regex(cf.tokens.blackhole, /^[0-9a-f]{64}$/);
    t.is(fs.statSync(cfPath).mode & 0o077, 0, 'coroner.cf (it holds tokens) is private');

    const snaps = tempDir('coroner-put-');
    const a = await corpusSnapshot('c-segv-O0', snaps);
    const b = await corpusSnapshot('many-threads', snaps); // large: goes gzip-encoded
    t.true(fs.statSync(b).size > 32 * 1024);
    const put = await runBin('coroner', ['-c', cfPath, 'put', 'blackhole', 'blackhole', a, b]);
    t.is(put.code, 0, put.stderr);
    const lines = put.stdout.trim().split('\n');
    t.is(lines.length, 2);
    t.regex(lines[0]!, /c-segv-O0\.json: [0-9a-f-]{36}$/);
    t.is(await countIn(data), 2);

    // -c after the subcommand, -u unlinks what was stored; a missing file fails on its own line.
    const c = await corpusSnapshot('c-abort', snaps);
    const missing = path.join(snaps, 'missing.json');
    const put2 = await runBin('coroner', ['put', '-u', '-c', cfPath, 'blackhole', 'blackhole', c, missing]);
    t.is(put2.code, 1);
    t.false(fs.existsSync(c), 'uploaded file removed');
    const errors = put2.stderr.trim().split('\n');
    t.is(errors.length, 1, put2.stderr);
    t.regex(errors[0]!, /missing\.json: .*no such file/);
    t.is(await countIn(data), 3);

    // --resource files travel inside the snapshot and come out as attachments.
    const resource = path.join(snaps, 'app.log');
    fs.writeFileSync(resource, 'last words of the crashed program\n');
    const withResource = await corpusSnapshot('c-segv-O0', snaps, [`--resource=${resource}`]);
    const put3 = await runBin('coroner', ['-c', cfPath, 'put', 'blackhole', 'blackhole', withResource]);
    t.is(put3.code, 0, put3.stderr);
    const rxid = put3.stdout.trim().split(': ')[1]!;
    const store = await openSqliteStore({ dataDir: data, workers: false });
    try {
      const u = (await store.getUniverse('local'))!;
      const p = (await store.getProject(u.id, 'blackhole'))!;
      const object = (await store.findObjectByRxid(p.id, rxid))!;
      const [attachment] = await store.listAttachments(p.id, object.id);
      t.is(attachment?.name, 'app.log');
      t.is(Buffer.from((await store.getAttachment(p.id, object.id, attachment!.id))!.data).toString(), 'last words of the crashed program\n');
    } finally {
      await store.close();
    }

    // [token] (the vendor's spelling) works as well as [tokens]; an unknown name is one clear line.
    const legacy = path.join(snaps, 'legacy.cf');
    fs.writeFileSync(legacy, `[universe]\nname = local\nwrite = ${server.url}\n[token]\nbh = ${cf.tokens.blackhole}\n`);
    const d = await corpusSnapshot('c-segv-O2', snaps);
    t.is((await runBin('coroner', ['-c', legacy, 'put', 'blackhole', 'bh', d])).code, 0);
    const unknown = await runBin('coroner', ['-c', legacy, 'put', 'blackhole', 'nope', d]);
    t.is(unknown.code, 1);
    t.regex(unknown.stderr, /no token named "nope".*bh/);
    // A refused upload (bad token) is not retried and fails clearly.
    fs.writeFileSync(legacy, `[universe]\nwrite = ${server.url}\n[tokens]\nbh = ${'0'.repeat(64)}\n`);
    const refused = await runBin('coroner', ['-c', legacy, 'put', 'blackhole', 'bh', d]);
    t.is(refused.code, 1);
    t.regex(refused.stderr, /HTTP 403: invalid token/);
    // Nothing listening: retried, then one line.
    fs.writeFileSync(legacy, `[universe]\nwrite = http://127.0.0.1:1\n[tokens]\nbh = ${cf.tokens.blackhole}\n`);
    const down = await runBin('coroner', ['-c', legacy, 'put', 'blackhole', 'bh', d]);
    t.is(down.code, 1);
    t.regex(down.stderr, /after 4 attempts/);
  } finally {
    await server.stop();
  }
});

test('restart after SIGKILL loses nothing acknowledged, under concurrent submitters', async (t) => {
  const data = tempDir();
  const first = await spawnServe(data);
  const cf = ini.parse(fs.readFileSync(path.join(data, 'coroner.cf'), 'utf8'));
  const url = `${first.url}/post?format=json&token=${cf.tokens.blackhole}`;
  const acknowledged = new Set<string>();
  let stop = false;
  const submitter = async () => {
    while (!stop) {
      try {
        const r = report();
        const res = await http(url, { body: JSON.stringify(r) });
        if (res.status === 200) acknowledged.add(r.uuid as string);
      } catch {
        return; // the server died mid-request: that one was never acknowledged
      }
    }
  };
  const running = Array.from({ length: 8 }, submitter);
  await new Promise((r) => setTimeout(r, 1500));
  await first.stop('SIGKILL');
  stop = true;
  await Promise.all(running);
  t.true(acknowledged.size > 20, `only ${acknowledged.size} acknowledged before the kill`);

  const second = await spawnServe(data);
  try {
    t.notRegex(second.output(), /first start/, 'the restart does not bootstrap again');
    const store = await openSqliteStore({ dataDir: data, workers: false });
    try {
      const u = (await store.getUniverse('local'))!;
      const p = (await store.getProject(u.id, 'blackhole'))!;
      const stored = new Set<string>();
      for await (const o of store.scanObjects(p.id)) stored.add(o.uuid);
      const lost = [...acknowledged].filter((id) => !stored.has(id));
      t.deepEqual(lost, [], `${lost.length} of ${acknowledged.size} acknowledged reports were lost`);
    } finally {
      await store.close();
    }
    // And the restarted server takes submissions.
    const res = await http(`${second.url}/post?format=json&token=${cf.tokens.blackhole}`, { body: JSON.stringify(report()) });
    t.is(res.status, 200);
  } finally {
    await second.stop();
  }
});

test('project, token and user commands act on the store directly, with --json', async (t) => {
  const data = tempDir();
  const server = await spawnServe(data);
  await server.stop();
  const run = async (...args: string[]) => {
    const r = await runBin('coroner', [...args, '--data', data]);
    return r;
  };
  const json = async (...args: string[]) => {
    const r = await run(...args, '--json');
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  const created = await json('project', 'create', 'web');
  t.is(created.project.name, 'web');
  t.regex(created.token.id, /^[0-9a-f]{64}$/);
  t.is(created.token.name, 'web');
  const projects = await json('project', 'list');
  t.deepEqual(projects.map((p: { name: string }) => p.name), ['blackhole', 'web']);
  const dup = await run('project', 'create', 'web');
  t.is(dup.code, 1);
  t.regex(dup.stderr, /^coroner: A project named "web" already exists\.\n$/);
  const badName = await run('project', 'create', '../etc');
  t.is(badName.code, 1);
  t.regex(badName.stderr, /not a valid project name/);

  const extra = await json('token', 'create', 'web', '--name', 'ci');
  t.is(extra.name, 'ci');
  const tokens = await json('token', 'list', 'web');
  t.is(tokens.length, 2);
  const revoked = await json('token', 'delete', extra.id);
  t.is(revoked.project, 'web');
  t.is((await json('token', 'list', 'web')).length, 1);

  const user = await (async () => {
    const r = await runBin('coroner', ['user', 'create', 'bob', '--email', 'bob@example.com', '--data', data, '--json'], {
      env: { ...process.env, CORONER_PASSWORD: 'bobs password' },
    });
    t.is(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  })();
  t.is(user.username, 'bob');
  t.false(user.superuser);
  t.false('passwordHash' in user);
  const noPassword = await run('user', 'create', 'carol');
  t.is(noPassword.code, 2);
  const users = await json('user', 'list');
  t.deepEqual(users.map((u: { username: string }) => u.username), ['admin', 'bob']);
  const lastAdmin = await run('user', 'delete', 'admin');
  t.is(lastAdmin.code, 1);
  t.regex(lastAdmin.stderr, /last superuser/);
  t.is((await json('user', 'delete', 'bob')).username, 'bob');
  t.is((await json('project', 'delete', 'web')).name, 'web');
  t.deepEqual((await json('project', 'list')).map((p: { name: string }) => p.name), ['blackhole']);

  // The server sees what the CLI did: the HTTP admin endpoints list the same.
  const again = await spawnServe(data);
  try {
    const store = await openSqliteStore({ dataDir: data, workers: false });
    const { verifyLogin } = await import('../../ts/server/auth.js');
    const login = await verifyLogin(store, 'local', 'admin', ADMIN_PASSWORD, '127.0.0.1');
    await store.close();
    t.true(login.ok);
    const token = login.ok ? login.session.token : '';
    const listed = await http(`${again.url}/api/admin/projects?token=${token}`);
    t.deepEqual(listed.json.projects.map((p: { name: string }) => p.name), ['blackhole']);
    const made = await http(`${again.url}/api/admin/projects?token=${token}`, { body: JSON.stringify({ name: 'api-made' }) });
    t.is(made.status, 200, made.text);
    t.regex(made.json.token.id, /^[0-9a-f]{64}$/);
    const user2 = await http(`${again.url}/api/admin/users?token=${token}`, { body: JSON.stringify({ username: 'dave', password: 'short' }) });
    t.is(user2.status, 400);
    t.regex(user2.json.error.message, /at least 8/);
    const gone = await http(`${again.url}/api/admin/projects/api-made?token=${token}`, { method: 'DELETE' });
    t.is(gone.status, 200);
    t.is((await http(`${again.url}/api/admin/projects/api-made?token=${token}`, { method: 'DELETE' })).status, 404);
  } finally {
    await again.stop();
  }
});

test('serve --tls-cert/--tls-key serves HTTPS on the one port; put trusts a self-signed server when coroner.cf says so', async (t) => {
  const data = tempDir();
  const key = path.join(data, 'key.pem');
  const cert = path.join(data, 'cert.pem');
  const ssl = await execFileP('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1']);
  t.is(ssl.code, 0, ssl.stderr);
  const server = await spawnServe(data, ['--tls-cert', cert, '--tls-key', key]);
  try {
    t.regex(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const cfPath = path.join(data, 'coroner.cf');
    const snaps = tempDir('coroner-tls-');
    const snap = await corpusSnapshot('c-segv-O0', snaps);
    // Without being told, a self-signed certificate is refused (at once: retrying cannot help) ...
    const refused = await runBin('coroner', ['-c', cfPath, 'put', 'blackhole', 'blackhole', snap]);
    t.is(refused.code, 1);
    t.regex(refused.stderr, /certificate.*ssl_verifypeer/i);
    // ... and with curl.ssl_verifypeer = false (the vendor's key) it is used.
    const text = fs.readFileSync(cfPath, 'utf8').replace('[universe]\n', '[universe]\ncurl.ssl_verifypeer = false\n');
    fs.writeFileSync(cfPath, text);
    const put = await runBin('coroner', ['-c', cfPath, 'put', 'blackhole', 'blackhole', snap]);
    t.is(put.code, 0, put.stderr);
    t.is(await countIn(data), 1);
  } finally {
    await server.stop();
  }
});

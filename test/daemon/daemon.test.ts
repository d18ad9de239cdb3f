/**
 * coresnapd end to end without the kernel: crashes are spooled by the real handler (run as the
 * kernel runs it), the daemon runs as a child process with --no-install (core_pattern untouched),
 * and snapshots go to a loopback receiver that answers like coroner's /post.
 */

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import test from 'ava';

import { packageRoot } from '../../ts/native/index.js';

import {
  compileCrash,
  CORESNAP,
  DaemonProcess,
  makeCore,
  Receiver,
  runHandler,
  sleep,
  startWaiting,
  statusOf,
  uuidsIn,
  waitFor,
  writeConfig,
} from './helpers/env.js';
import { crashWorkdir } from './helpers/workdir.js';

const { root, exe } = crashWorkdir();
const special = compileCrash(root, 'special');
const core = makeCore(exe, path.join(root, 'made'));
const specialCore = makeCore(special, path.join(root, 'made-special'));

/** Spools `n` crashes of `program` (its core) into the archive, as the kernel would. */
async function spool(archive: string, program = exe, programCore = core, n = 1): Promise<string[]> {
  const before = new Set([...uuidsIn(archive, 'pending'), ...uuidsIn(archive, 'sending'), ...uuidsIn(archive, 'sent')]);
  const proc = await startWaiting(program);
  try {
    for (let i = 0; i < n; i++) {
      const run = runHandler(archive, programCore, proc.pid);
      if (run.code !== 0) throw new Error(`handler failed: ${run.stderr}`);
    }
  } finally {
    proc.kill('SIGKILL');
  }
  return [...uuidsIn(archive, 'pending'), ...uuidsIn(archive, 'sending'), ...uuidsIn(archive, 'sent')].filter((u) => !before.has(u));
}

function sub(name: string): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { mode: 0o755 });
  return dir;
}

function coresnap(args: string[]): string {
  return execFileSync(CORESNAP, args, { encoding: 'utf8' });
}

test('a crash goes pending → sending → sent: one upload with the attributes, the guide\'s log lines, a zstd core', async (t) => {
  const rx = new Receiver();
  await rx.start();
  const env = writeConfig(sub('basic'), rx.url, { blackhole: 'tok-bh' });
  const daemon = new DaemonProcess(env.conf);
  try {
    await daemon.waitForLog(/coresnapd started/);
    const [uuid] = await spool(env.archive);
    t.truthy(uuid);
    await daemon.waitForLog(new RegExp(`crash ${uuid} processed in \\d+ seconds?\\n`));
    t.is(rx.posts.length, 1);
    const post = rx.posts[0]!;
    t.is(post.token, 'tok-bh');
    t.is(post.format, 'json');
    t.is(post.body.uuid, uuid, 'the snapshot carries the crash uuid');
    const attrs = post.body.attributes ?? {};
    t.is(attrs['coresnap.object'], uuid);
    t.is(attrs.application, 'crashy');
    for (const key of ['hostname', 'uname.machine', 'uname.release', 'uname.version', 'pid', 'uid', 'cmdline', 'cgroup']) t.not(attrs[key], undefined, key);
    t.is(attrs.cmdline, `${exe} wait`);
    t.truthy(post.body.threads);
    // The exact command, in the guide's shape, so it can be rerun by hand.
    const a = env.archive;
    t.true(
      daemon.output.includes(
        `Executing slave: ${path.resolve('bin/ptrace')} --faulted -o${a}/sending/${uuid} --load=libc- --kv=coresnap.object:${uuid} --resource=${a}/assets/${uuid} --core ${a}/pending/${uuid} ${exe}`,
      ),
      daemon.output,
    );
    t.deepEqual(uuidsIn(a, 'pending'), []);
    t.deepEqual(uuidsIn(a, 'sending'), []);
    t.deepEqual(uuidsIn(a, 'sent'), [uuid]);
    const unpacked = execFileSync('zstd', ['-d', '-c', path.join(a, 'cores', `${uuid}.zst`)]);
    t.true(unpacked.equals(fs.readFileSync(core)), 'the compressed core is the core');
    t.is(statusOf(a, uuid!)?.rxid, 'rx-0');
    const listed = JSON.parse(coresnap(['list', '-c', env.conf, '--all', '--json']));
    t.deepEqual(
      listed.items.map((i: { state: string; uuid: string; flags: unknown }) => [i.state, i.uuid, i.flags]),
      [['sent', uuid, { core: true, snapshot: true, assets: true }]],
    );
  } finally {
    await daemon.stop();
    await rx.stop();
  }
});

test('format rules route by the executable\'s path; BACKTRACE_DEFAULTS and defaults.command add attributes', async (t) => {
  const rx = new Receiver();
  await rx.start();
  const dir = sub('routing');
  const defaults = path.join(dir, 'defaults');
  fs.writeFileSync(defaults, '#!/bin/sh\necho "team=from-command"\necho "exe_arg=$1"\necho "whoami=$(id -un)"\n', { mode: 0o755 });
  const env = writeConfig(dir, rx.url, { blackhole: 'tok-bh', special: 'tok-special' }, [
    'format.1 = special %e /special$',
    'format.1 = blackhole',
    `defaults.command = ${defaults}`,
  ]);
  const daemon = new DaemonProcess(env.conf, ['--no-install'], { BACKTRACE_DEFAULTS: 'region=eu\nteam=from-env' });
  try {
    await daemon.waitForLog(/coresnapd started/);
    const [plain] = await spool(env.archive);
    const [routed] = await spool(env.archive, special, specialCore);
    await daemon.waitForLog(new RegExp(`crash ${plain} processed`));
    await daemon.waitForLog(new RegExp(`crash ${routed} processed`));
    const byUuid = new Map(rx.posts.map((p) => [p.body.uuid, p]));
    t.is(byUuid.get(plain)?.token, 'tok-bh');
    t.is(byUuid.get(routed)?.token, 'tok-special');
    const attrs = byUuid.get(routed)?.body.attributes ?? {};
    t.is(attrs.region, 'eu');
    t.is(attrs.team, 'from-command', 'defaults.command wins over the environment');
    t.is(attrs.exe_arg, special);
    t.is(attrs.whoami, 'coresnap', 'the defaults command runs unprivileged');
    t.is(statusOf(env.archive, routed!)?.project, 'special');
  } finally {
    await daemon.stop();
    await rx.stop();
  }
});

test('a malformed core is parked with ptrace\'s error and the daemon goes on; list shows it; retry redoes it', async (t) => {
  const rx = new Receiver();
  await rx.start();
  const env = writeConfig(sub('malformed'), rx.url, { blackhole: 'tok-bh' });
  // Spool garbage through the real handler: it is what a truncated or foreign dump looks like.
  const garbage = path.join(env.dir, 'garbage');
  fs.writeFileSync(garbage, Buffer.from('this is not an ELF core\n'.repeat(1000)));
  const daemon = new DaemonProcess(env.conf);
  try {
    await daemon.waitForLog(/coresnapd started/);
    const [bad] = await spool(env.archive, exe, garbage);
    await daemon.waitForLog(new RegExp(`crash ${bad}: ptrace exited with \\d+: .+; parked in pending/`));
    const [good] = await spool(env.archive);
    await daemon.waitForLog(new RegExp(`crash ${good} processed`));
    t.deepEqual(rx.posts.map((p) => p.body.uuid), [good]);
    t.deepEqual(uuidsIn(env.archive, 'pending'), [bad]);

    const table = coresnap(['list', '-c', env.conf]);
    const lines = table.split('\n');
    t.regex(lines[0] ?? '', new RegExp(`^   pending/${bad!.slice(0, 12)}\\.\\.\\. c-a crashy\\s+\\w{3} \\w{3} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d \\d{4}\\s+24\\.00kB$`), table);
    t.regex(lines[1] ?? '', /^ {6}parked \(snapshot\): ptrace exited with/, table);
    t.true(lines.includes('[pending]/1O/24.00kB [sending]/0O/0B'), table);

    const retried = coresnap(['retry', '-c', env.conf, `pending/${bad!.slice(0, 8)}`]);
    t.regex(retried, /was parked \(ptrace exited with .*\); coresnapd is on it/);
    await waitFor('the second ptrace run', () => daemon.count(new RegExp(`Executing slave: .*--core ${env.archive}/pending/${bad}`)) === 2);
    await daemon.waitForLog(new RegExp(`crash ${bad}: ptrace exited[^\\n]*\\n[^]*crash ${bad}: ptrace exited`));
    t.is(daemon.child.exitCode, null, 'the daemon is still running');
  } finally {
    await daemon.stop();
    await rx.stop();
  }
});

test('a refused token parks the item in sending/ with the reason; retry after the fix sends it', async (t) => {
  const rx = new Receiver();
  rx.answer = () => [403, { error: { message: 'invalid token' } }];
  await rx.start();
  const env = writeConfig(sub('refused'), rx.url, { blackhole: 'bad-token' });
  const daemon = new DaemonProcess(env.conf);
  try {
    await daemon.waitForLog(/coresnapd started/);
    const [uuid] = await spool(env.archive);
    await daemon.waitForLog(new RegExp(`crash ${uuid}: the server refused the token of project blackhole \\(HTTP 403`));
    t.deepEqual(uuidsIn(env.archive, 'sending'), [uuid]);
    t.regex(coresnap(['list', '-c', env.conf]), /parked \(upload\): the server refused the token of project blackhole \(HTTP 403/);
    rx.answer = () => [200, { response: 'ok', _rxid: 'fixed' }];
    coresnap(['retry', '-c', env.conf, `sending/${uuid!.slice(0, 8)}`]);
    await daemon.waitForLog(new RegExp(`crash ${uuid} processed`));
    t.is(rx.posts.length, 1);
    t.is(statusOf(env.archive, uuid!)?.rxid, 'fixed');
  } finally {
    await daemon.stop();
    await rx.stop();
  }
});

test('server down, then up: uploads retry with backoff and each crash arrives once', async (t) => {
  const rx = new Receiver();
  await rx.start();
  const port = rx.port;
  await rx.stop();
  const env = writeConfig(sub('down-up'), `http://127.0.0.1:${port}`, { blackhole: 'tok' });
  const daemon = new DaemonProcess(env.conf);
  try {
    await daemon.waitForLog(/coresnapd started/);
    const uuids = await spool(env.archive, exe, core, 2);
    await daemon.waitForLog(/upload attempt 3 failed: http:\/\/127\.0\.0\.1:\d+ cannot be reached/);
    t.is(uuidsIn(env.archive, 'sending').length, 2);
    await rx.start(port);
    for (const uuid of uuids) await daemon.waitForLog(new RegExp(`crash ${uuid} processed`));
    t.deepEqual(rx.posts.map((p) => p.body.uuid).sort(), [...uuids].sort());
  } finally {
    await daemon.stop();
    await rx.stop();
  }
});

test('kill -9 of the daemon mid-processing, then a restart: nothing lost, nothing sent twice, no ptrace left behind', async (t) => {
  const rx = new Receiver();
  await rx.start();
  const dir = sub('kill9');
  // A ptrace that takes 3 s, so the kill lands while it runs (not after the upload).
  const slow = path.join(dir, 'slow-ptrace');
  fs.writeFileSync(slow, `#!/bin/sh\nsleep 3\nexec ${path.join(packageRoot, 'bin', 'ptrace')} "$@"\n`, { mode: 0o755 });
  const env = writeConfig(dir, rx.url, { blackhole: 'tok' }, [`ptrace.path = ${slow}`]);
  fs.mkdirSync(env.archive);
  const uuids = await spool(env.archive, exe, core, 4);
  t.is(uuids.length, 4);
  const first = new DaemonProcess(env.conf);
  await first.waitForLog(/Executing slave/);
  await first.kill9();
  // setpriv --pdeathsig: the ptrace of the killed daemon dies with it.
  await waitFor('no ptrace of this archive to remain', () => {
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    return !ps.split('\n').some((l) => l.includes(`-o${env.archive}/sending/`));
  }, 10_000);
  const second = new DaemonProcess(env.conf);
  try {
    await waitFor('all four crashes sent', () => uuidsIn(env.archive, 'sent').length === 4, 120_000);
    const sent = rx.posts.map((p) => p.body.uuid);
    t.is(sent.length, 4, `posts: ${sent.join(', ')}`);
    t.deepEqual([...sent].sort(), [...uuids].sort());
    t.deepEqual(uuidsIn(env.archive, 'pending'), []);
  } finally {
    await second.stop();
    await rx.stop();
  }
});

test('killed while the server holds an upload: the resend is the same snapshot uuid (the server deduplicates it)', async (t) => {
  const rx = new Receiver();
  rx.delayMs = 20_000;
  await rx.start();
  const env = writeConfig(sub('kill9-upload'), rx.url, { blackhole: 'tok' });
  const daemon = new DaemonProcess(env.conf);
  await daemon.waitForLog(/coresnapd started/);
  const [uuid] = await spool(env.archive);
  // The server has the snapshot, the daemon is still waiting for the answer: kill it there.
  await waitFor('the upload to reach the server', () => rx.posts.length === 1);
  await daemon.kill9();
  rx.delayMs = 0;
  const second = new DaemonProcess(env.conf);
  try {
    await waitFor('the item to be sent', () => uuidsIn(env.archive, 'sent').length === 1, 60_000);
    const posted = rx.posts.map((p) => p.body.uuid);
    t.deepEqual(posted, [uuid, uuid], 'sent again after the restart, as the same object');
  } finally {
    await second.stop();
    await rx.stop();
  }
});

test('purge.age removes old items in every state; purge.disabled keeps them', async (t) => {
  const rx = new Receiver();
  await rx.start();
  const env = writeConfig(sub('purge'), rx.url, { blackhole: 'tok' }, ['purge.age = 3s']);
  const kept = writeConfig(sub('purge-disabled'), rx.url, { blackhole: 'tok' }, ['purge.age = 3s', 'purge.disabled = true']);
  const daemon = new DaemonProcess(env.conf);
  const keeper = new DaemonProcess(kept.conf);
  try {
    await daemon.waitForLog(/coresnapd started/);
    await keeper.waitForLog(/coresnapd started/);
    const [uuid] = await spool(env.archive);
    const [keptUuid] = await spool(kept.archive);
    await daemon.waitForLog(new RegExp(`crash ${uuid} processed`));
    await daemon.waitForLog(new RegExp(`purged sent/${uuid}: \\d+ s old, purge.age is 3 s`), 30_000);
    for (const folder of ['sent', 'cores', 'meta', 'assets', 'pending', 'sending']) t.deepEqual(fs.readdirSync(path.join(env.archive, folder)), [], folder);
    await keeper.waitForLog(new RegExp(`crash ${keptUuid} processed`));
    await sleep(5000);
    t.deepEqual(uuidsIn(kept.archive, 'sent'), [keptUuid]);
    t.false(keeper.output.includes('purged'));
  } finally {
    await daemon.stop();
    await keeper.stop();
    await rx.stop();
  }
});

test('SIGHUP with a broken coresnap.conf keeps the last good configuration and names file:line', async (t) => {
  const rx = new Receiver();
  await rx.start();
  const env = writeConfig(sub('reload'), rx.url, { blackhole: 'tok-bh', special: 'tok-special' });
  const good = fs.readFileSync(env.conf, 'utf8');
  const daemon = new DaemonProcess(env.conf);
  try {
    await daemon.waitForLog(/coresnapd started/);
    fs.writeFileSync(env.conf, `${good}purge.age = soon\n`);
    const badLine = good.split('\n').length;
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog(new RegExp(`configuration not reloaded, keeping the last good one: \\| ${env.conf}:${badLine}: purge\\.age = soon`));
    const [before] = await spool(env.archive, special, specialCore);
    await daemon.waitForLog(new RegExp(`crash ${before} processed`));
    fs.writeFileSync(env.conf, `${good}format.1 = special %e /special$\nformat.1 = blackhole\n`);
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog(/configuration reloaded from .*: 2 format rule\(s\)/);
    const [after] = await spool(env.archive, special, specialCore);
    await daemon.waitForLog(new RegExp(`crash ${after} processed`));
    const tokens = new Map(rx.posts.map((p) => [p.body.uuid, p.token]));
    t.is(tokens.get(before), 'tok-bh');
    t.is(tokens.get(after), 'tok-special');
  } finally {
    await daemon.stop();
    await rx.stop();
  }
});

test('a configuration problem at start names file:line and exits 2', async (t) => {
  const env = writeConfig(sub('badstart'), 'http://127.0.0.1:9', { blackhole: 'tok' }, ['format.1 = nosuch %e /x$']);
  const daemon = new DaemonProcess(env.conf);
  const code = await daemon.exited;
  t.is(code, 2);
  const line = fs.readFileSync(env.conf, 'utf8').split('\n').indexOf('format.1 = nosuch %e /x$') + 1;
  t.regex(daemon.output, new RegExp(`${env.conf}:${line}: project nosuch has no token in ${env.coronerCf}`));
});

test('the SysV init script starts, reports, reloads and stops coresnapd', async (t) => {
  const rx = new Receiver();
  await rx.start();
  t.teardown(() => rx.stop());
  const env = writeConfig(sub('initd'), rx.url, { blackhole: 'tok' });
  const script = path.join(packageRoot, 'etc', 'init.d', 'coresnapd');
  const vars = { ...process.env, DAEMON: path.join(packageRoot, 'bin', 'coresnapd'), DAEMON_ARGS: `-c ${env.conf} --no-install`, PIDFILE: path.join(env.dir, 'coresnapd.pid') };
  const run = (action: string): string => execFileSync(script, [action], { env: vars, encoding: 'utf8' });
  const logFile = path.join(env.archive, 'log', 'coresnap.log');
  const log = (): string => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '');
  t.regex(run('start'), /coresnapd started \(pid \d+\)/);
  try {
    await waitFor(() => `the start in the log\n${log()}`, () => log().includes('coresnapd started'));
    t.regex(run('status'), /coresnapd is running/);
    run('reload');
    await waitFor(() => `the reload in the log\n${log()}`, () => log().includes('configuration reloaded'));
    const [uuid] = await spool(env.archive);
    await waitFor(() => `the crash processed\n${log()}`, () => log().includes(`crash ${uuid} processed`));
  } finally {
    run('stop');
  }
  t.regex(log(), /SIGTERM received, stopping/);
  const status = (() => {
    try {
      return run('status');
    } catch (err) {
      return String((err as { stdout?: string }).stdout);
    }
  })();
  t.regex(status, /coresnapd is not running/);
});

test('with a syslog socket, every line goes there as coresnap[pid] with its severity', async (t) => {
  const rx = new Receiver();
  await rx.start();
  t.teardown(() => rx.stop());
  const env = writeConfig(sub('syslog'), rx.url, { blackhole: 'tok' });
  const socket = path.join(env.dir, 'log.sock');
  const received = path.join(env.dir, 'received');
  // A minimal syslog daemon: one datagram per line into a file.
  const listener = execFileSync('sh', ['-c', `python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536) + b"\\n")
' "${socket}" "${received}" > ${env.dir}/listener.out 2>&1 & echo $!`], { encoding: 'utf8' }).trim();
  t.teardown(() => {
    try {
      process.kill(Number(listener), 'SIGKILL');
    } catch {
      // gone
    }
  });
  await waitFor('the listener to bind', () => fs.existsSync(socket));
  const daemon = new DaemonProcess(env.conf, ['--no-install'], { CORESNAP_SYSLOG_SOCKET: socket });
  try {
    const read = (): string => (fs.existsSync(received) ? fs.readFileSync(received, 'utf8') : '');
    await waitFor(() => `the start line in syslog\n${read()}`, () => /coresnapd started/.test(read()));
    const [uuid] = await spool(env.archive);
    await waitFor(() => `the crash in syslog\n${read()}`, () => read().includes(`crash ${uuid} processed`));
    const lines = read().split('\n').filter(Boolean);
    const executing = lines.find((l) => l.includes('Executing slave:'));
    t.regex(executing ?? '', new RegExp(`^<30>.*coresnap\\[${daemon.child.pid}\\]: Executing slave: `));
    t.false(fs.existsSync(path.join(env.archive, 'log', 'coresnap.log')) && fs.readFileSync(path.join(env.archive, 'log', 'coresnap.log'), 'utf8').includes('Executing'), 'with syslog, the daemon does not write the file');
  } finally {
    await daemon.stop();
  }
});

/**
 * coresnap.conf and coroner.cf: keys at the top or under [daemon], format.N rules kept in order
 * with the first match winning, units, and problems that name file:line.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import test from 'ava';

import { DEFAULT_ARCHIVE, parseCoresnapConf, routeFor } from '../../ts/config/coresnap-conf.js';
import { handlerPattern, otherOwnerWarnings, parseCoresnapPattern } from '../../ts/daemon/install.js';
import { backoffSeconds } from '../../ts/daemon/upload.js';
import { packageRoot } from '../../ts/native/index.js';
import { parseCoronerCf } from '../../ts/config/coroner-cf.js';
import { ConfigError } from '../../ts/config/problems.js';
import { formatSize, parseDuration, parseQuota, requiredFree } from '../../ts/config/units.js';

function withCoroner(tokens: string): { cf: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coresnap-conf-'));
  const cf = path.join(dir, 'coroner.cf');
  fs.writeFileSync(cf, `[universe]\nwrite = http://127.0.0.1:6097\n[tokens]\n${tokens}`);
  return { cf, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

test('the guide\'s sample keys, at the top and under [daemon], with repeated format.1 rules in order', (t) => {
  const { cf, cleanup } = withCoroner('blackhole = aaa\nvim = bbb\nmyapp = ccc\n');
  try {
    const config = parseCoresnapConf(
      [
        '; routing',
        `coroner.cf = ${cf}`,
        'format.1 = vim %e /vim\\.basic$',
        'format.1 = myapp %e /bin/myapp$',
        'format.1 = blackhole',
        'dump.quota = 10%',
        '[daemon]',
        'purge.age = 1d',
        'purge.disabled = false',
        'concurrency = 3',
        'defaults.command = /usr/local/etc/coresnap/my-defaults',
      ].join('\n'),
      '/etc/coresnap/coresnap.conf',
      { env: {} },
    );
    t.is(config.archivePath, DEFAULT_ARCHIVE);
    t.deepEqual(config.routes.map((r) => r.project), ['vim', 'myapp', 'blackhole']);
    t.is(routeFor(config, '/usr/bin/vim.basic')?.project, 'vim');
    t.is(routeFor(config, '/opt/x/bin/myapp')?.project, 'myapp');
    t.is(routeFor(config, '/usr/bin/myapp2')?.project, 'blackhole');
    t.deepEqual(config.dumpQuota, { kind: 'percent', percent: 10 });
    t.is(config.purgeAgeSeconds, 86_400);
    t.false(config.purgeDisabled);
    t.is(config.concurrency, 3);
    t.is(config.defaultsCommand, '/usr/local/etc/coresnap/my-defaults');
    t.is(config.coroner?.tokens.get('vim'), 'bbb');
    t.is(config.coroner?.write, 'http://127.0.0.1:6097');
  } finally {
    cleanup();
  }
});

test('every problem names file:line and all are reported at once', (t) => {
  const { cf, cleanup } = withCoroner('blackhole = aaa\n');
  try {
    const err = t.throws(
      () =>
        parseCoresnapConf(
          [
            `coroner.cf = ${cf}`, // 1
            'purge.age = 3 days', // 2
            'dump.quota = lots', // 3
            'format.1 = vim %c 0', // 4
            'format.1 = broken %e ([', // 5
            'this is not ini', // 6
            'concurrency = 0', // 7
          ].join('\n'),
          '/tmp/x/coresnap.conf',
          { env: {} },
        ),
      { instanceOf: ConfigError },
    );
    const lines = (err?.message ?? '').split('\n');
    t.is(lines.length, 6, err?.message);
    for (const n of [2, 3, 4, 5, 6, 7]) t.true(lines.some((l) => l.startsWith(`/tmp/x/coresnap.conf:${n}: `)), `line ${n} in\n${err?.message}`);
    t.regex(err?.message ?? '', /purge\.age = 3 days: expected <N><s\|m\|h\|d\|w\|M>/);
  } finally {
    cleanup();
  }
});

test('a project without a token in coroner.cf is refused at its line', (t) => {
  const { cf, cleanup } = withCoroner('blackhole = aaa\n');
  try {
    const err = t.throws(() => parseCoresnapConf(`coroner.cf = ${cf}\n\nformat.1 = nosuch %e /x$\nformat.1 = blackhole\n`, '/c.conf', { env: {} }), {
      instanceOf: ConfigError,
    });
    t.regex(err?.message ?? '', /^\/c\.conf:3: project nosuch has no token in .*coroner\.cf/);
    // CORONER_CF wins over the key.
    const { cf: other, cleanup: cleanupOther } = withCoroner('nosuch = t\nblackhole = b\n');
    try {
      const config = parseCoresnapConf(`coroner.cf = ${cf}\nformat.1 = nosuch %e /x$\nformat.1 = blackhole\n`, '/c.conf', { env: { CORONER_CF: other } });
      t.is(config.coronerCfPath, other);
    } finally {
      cleanupOther();
    }
  } finally {
    cleanup();
  }
});

test('coroner.cf: [token] or [tokens], and a missing write address is a problem', (t) => {
  const cf = parseCoronerCf('[universe]\nwrite = https://h:6098/\ncurl.ssl_verifypeer = false\n[token]\nblackhole = 00ff\n', '/x.cf');
  t.is(cf.write, 'https://h:6098');
  t.true(cf.insecure);
  t.is(cf.tokens.get('blackhole'), '00ff');
  t.throws(() => parseCoronerCf('[tokens]\nblackhole = 1\n', '/y.cf'), { instanceOf: ConfigError, message: /\/y\.cf: there is no \[universe\] write/ });
  t.throws(() => parseCoronerCf('[universe]\nwrite = ftp://x\n', '/z.cf'), { instanceOf: ConfigError, message: /\/z\.cf:2: write = ftp:\/\/x/ });
});

test('no format rule means everything goes to blackhole', (t) => {
  const config = parseCoresnapConf('', null, { env: {}, withoutCoroner: true });
  t.deepEqual(config.routes.map((r) => [r.project, r.pattern]), [['blackhole', null]]);
});

test('units: durations, quotas, sizes as the vendor prints them', (t) => {
  t.is(parseDuration('30s'), 30);
  t.is(parseDuration('2w'), 14 * 86_400);
  t.is(parseDuration('1M'), 30 * 86_400);
  t.is(parseDuration('1y'), null);
  t.is(parseDuration('d'), null);
  t.deepEqual(parseQuota('500M'), { kind: 'bytes', bytes: 500 * 1024 * 1024 });
  t.is(parseQuota('120%'), null);
  t.is(requiredFree({ kind: 'percent', percent: 10 }, 1_000_000, 4096), 102_400);
  t.is(formatSize(9450), '9.45kB');
  t.is(formatSize(3_120_000), '3.12mB');
  t.is(formatSize(812), '812B');
});

test('the shipped sample etc/coresnap.conf reads without a problem or a warning', (t) => {
  const file = path.join(packageRoot, 'etc', 'coresnap.conf');
  const config = parseCoresnapConf(fs.readFileSync(file, 'utf8'), file, { env: {}, withoutCoroner: true });
  t.deepEqual(config.warnings, []);
  t.is(config.archivePath, DEFAULT_ARCHIVE);
  t.deepEqual(config.dumpQuota, { kind: 'percent', percent: 10 });
  t.is(config.purgeAgeSeconds, 86_400);
  t.is(config.rateBurst, 10);
  t.is(config.rateWindowSeconds, 60);
  t.deepEqual(config.routes.map((r) => r.project), ['blackhole']);
});

test('install recognises its own patterns and warns about other owners of core_pattern', (t) => {
  const pattern = handlerPattern('/opt/coresnap/coresnap-handler', '/var/coresnap/archive');
  t.is(pattern, '|/opt/coresnap/coresnap-handler --archive=/var/coresnap/archive %P %I %s %c %d %t %e');
  t.deepEqual(parseCoresnapPattern(pattern), { handler: '/opt/coresnap/coresnap-handler', archive: '/var/coresnap/archive' });
  t.is(parseCoresnapPattern('core'), null);
  t.is(parseCoresnapPattern('|/usr/share/apport/apport -p%p -s%s -c%c -d%d -P%P -u%u -g%g -- %E'), null);
  const apport = otherOwnerWarnings('|/usr/share/apport/apport -p%p -s%s -c%c -d%d -P%P -u%u -g%g -- %E');
  t.true(apport.some((w) => /belonged to apport .*systemctl disable --now apport/.test(w)), apport.join('\n'));
  const coredump = otherOwnerWarnings('|/lib/systemd/systemd-coredump %P %u %g %s %t 9223372036854775808 %h');
  t.true(coredump.some((w) => /belonged to systemd-coredump/.test(w)), coredump.join('\n'));
  t.true(otherOwnerWarnings('|/usr/bin/other-collector %p').some((w) => /another program/.test(w)));
  t.false(otherOwnerWarnings('core').some((w) => /belonged/.test(w)));
});

test('upload backoff doubles up to its cap, with jitter in [d/2, d]', (t) => {
  t.is(backoffSeconds(0, 1, 600, () => 1), 1);
  t.is(backoffSeconds(3, 1, 600, () => 1), 8);
  t.is(backoffSeconds(3, 1, 600, () => 0), 4);
  t.is(backoffSeconds(30, 1, 600, () => 1), 600);
  for (let n = 0; n < 50; n++) {
    const wait = backoffSeconds(n, 1, 600);
    const cap = Math.min(600, 2 ** n);
    t.true(wait >= cap / 2 && wait <= cap, `attempt ${n}: ${wait}`);
  }
});

/**
 * Passwords, sessions, tokens and login throttling: the pieces every endpoint that authenticates
 * uses. Passwords are hashed with scrypt (node:crypto) as `scrypt$N$r$p$salt$hash` (base64), so
 * the cost can rise later without breaking stored hashes. Session tokens are 32 random bytes in
 * hex, stored hashed (the store does that), and expire. Login throttling counts failures per
 * remote address and per user name in memory: a burst of wrong passwords earns an exponentially
 * growing wait; a success clears the user's count.
 */

import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { ApiToken, Session, Store, User } from '../store/types.js';

const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 };

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0) || N > 1 << 20) return false;
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (expected.length === 0) return false;
  const key = await scrypt(password, salt, expected.length, { N, r, p, maxmem: 256 * 1024 * 1024 });
  return timingSafeEqual(key, expected);
}

/** A random secret: 32 bytes as 64 hex digits (session and submission tokens). */
export function newToken(): string {
  return randomBytes(32).toString('hex');
}

/** A password for the first admin when none was given: 18 random bytes, base64url (24 characters). */
export function newPassword(): string {
  return randomBytes(18).toString('base64url');
}

export const DEFAULT_SESSION_TTL_SECONDS = 7 * 24 * 3600;

/** Starts a session for `user`; the token is what the client sends back as `?token=`. */
export async function startSession(store: Store, user: User, ttlSeconds = DEFAULT_SESSION_TTL_SECONDS): Promise<Session> {
  const session: Session = {
    token: newToken(),
    uid: user.uid,
    universeId: user.universeId,
    expiresAt: Math.floor(Date.now() / 1000) + ttlSeconds,
  };
  await store.createSession(session);
  return session;
}

/** Creates a submission token for a project (named after the project unless told otherwise). */
export async function createSubmissionToken(store: Store, projectId: number, name: string, ownerUid: number): Promise<ApiToken> {
  return store.createToken({ id: newToken(), projectId, name, ownerUid, capabilities: ['error:post', 'symbol:post', 'sync:post'] });
}

// ---- login throttling

export interface ThrottleOptions {
  /** Failures allowed before waits start (per address and per user name). */
  freeFailures: number;
  /** The first wait, doubled by each further failure, up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** A key's failures are forgotten this long after its last one. */
  forgetAfterMs: number;
}

export const DEFAULT_THROTTLE: ThrottleOptions = { freeFailures: 5, baseDelayMs: 1000, maxDelayMs: 15 * 60 * 1000, forgetAfterMs: 30 * 60 * 1000 };

interface FailureRecord {
  failures: number;
  last: number;
  blockedUntil: number;
}

export class LoginThrottle {
  private readonly records = new Map<string, FailureRecord>();
  constructor(readonly options: ThrottleOptions = DEFAULT_THROTTLE) {}

  /** Milliseconds to wait before another attempt for these keys is considered (0 = go ahead). */
  retryAfterMs(keys: string[], now = Date.now()): number {
    let wait = 0;
    for (const k of keys) {
      const r = this.records.get(k);
      if (!r) continue;
      if (now - r.last > this.options.forgetAfterMs) {
        this.records.delete(k);
        continue;
      }
      wait = Math.max(wait, r.blockedUntil - now);
    }
    return wait;
  }

  fail(keys: string[], now = Date.now()): void {
    for (const k of keys) {
      const r = this.records.get(k) ?? { failures: 0, last: now, blockedUntil: 0 };
      r.failures++;
      r.last = now;
      const over = r.failures - this.options.freeFailures;
      if (over > 0) r.blockedUntil = now + Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** Math.min(over - 1, 30));
      this.records.set(k, r);
    }
    if (this.records.size > 100_000) this.prune(now);
  }

  succeed(keys: string[]): void {
    for (const k of keys) this.records.delete(k);
  }

  private prune(now: number): void {
    for (const [k, r] of this.records) if (now - r.last > this.options.forgetAfterMs) this.records.delete(k);
  }
}

const throttles = new WeakMap<Store, LoginThrottle>();

/** The throttle of a store (one per store object, shared by every endpoint of the process). */
export function loginThrottle(store: Store): LoginThrottle {
  let t = throttles.get(store);
  if (!t) {
    t = new LoginThrottle();
    throttles.set(store, t);
  }
  return t;
}

export type LoginResult =
  | { ok: true; user: User; session: Session }
  | { ok: false; status: 401 | 429; message: string; retryAfterSeconds?: number };

/**
 * Checks a username and password in a universe and starts a session on success. Throttled per
 * remote address and per user name: while a wait is due, the answer is 429 without looking at
 * the password. A wrong user and a wrong password get the same answer (no user enumeration).
 */
export async function verifyLogin(
  store: Store,
  universe: string,
  username: string,
  password: string,
  remoteAddr: string,
  options: { sessionTtlSeconds?: number; throttle?: LoginThrottle } = {},
): Promise<LoginResult> {
  const throttle = options.throttle ?? loginThrottle(store);
  const keys = [`addr:${remoteAddr}`, `user:${universe}/${username}`];
  const wait = throttle.retryAfterMs(keys);
  if (wait > 0) {
    const retryAfterSeconds = Math.ceil(wait / 1000);
    return { ok: false, status: 429, message: `Too many failed logins; try again in ${retryAfterSeconds} seconds.`, retryAfterSeconds };
  }
  const u = await store.getUniverse(universe);
  const user = u ? await store.getUser(u.id, username) : undefined;
  // Hash even for an unknown user so both answers take as long.
  const ok = user ? await verifyPassword(password, user.passwordHash) : (await verifyPassword(password, DUMMY_HASH), false);
  if (!ok || !user) {
    throttle.fail(keys);
    return { ok: false, status: 401, message: 'Invalid username or password.' };
  }
  throttle.succeed([`user:${universe}/${username}`]);
  const { passwordHash: _, ...plain } = user;
  const session = await startSession(store, plain, options.sessionTtlSeconds);
  return { ok: true, user: plain, session };
}

const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32, 1).toString('base64')}`;

/**
 * The query API's routes (backtrace-compat.md §1): mounted by the server through `mountApi`.
 *
 *   POST /api/login     form username/password or token → the login object (login.ts)
 *   GET  /api/logout    ends the session (POST too)
 *   POST /api/query     select / fold / group / set; ?action=describe (query.ts)
 *   GET  /api/get       report bytes or an attachment (objects.ts)
 *   GET  /api/list      an object's attachments
 *   POST /api/delete    objects by id or by query
 */

import type { Router } from '../router.js';
import { login, logout } from './login.js';
import { get, list, remove } from './objects.js';
import { query } from './query.js';

export function mountApi(router: Router): void {
  router.route('POST', '/api/login', login);
  router.route('GET', '/api/logout', logout);
  router.route('POST', '/api/logout', logout);
  router.route('POST', '/api/query', query);
  router.route('GET', '/api/get', get);
  router.route('GET', '/api/list', list);
  router.route('POST', '/api/delete', remove);
}

export { closeQueryService, queryServiceFor } from './service.js';

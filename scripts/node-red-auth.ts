// Node-RED settings that put the editor, the admin API, http-in routes and the dashboard behind
// one login: what the demo runs with and what the tests' Node-RED runs with. Node-RED's own
// mechanisms (https://nodered.org/docs/user-guide/runtime/securing-node-red):
// - adminAuth: the editor and every admin endpoint, our nodes' included (RED.auth.needsPermission);
// - httpNodeAuth: HTTP Basic on every http-in route and on Dashboard 2.0's pages;
// - dashboard.ioMiddleware: Dashboard 2.0's socket.io connection does not pass through
//   httpNodeAuth (it is served by the HTTP server directly), so its handshake checks the same
//   Basic credentials; without it anyone could press the dashboard's buttons.
import { randomBytes, scryptSync } from 'node:crypto';
import { nodeRedChoice, resolveFromNodeRed } from './node-red-choice';

export interface Login {
  username: string;
  password: string;
}

/** A new password: 20 characters of base64url (120 bits). */
export function newPassword(): string {
  return randomBytes(15).toString('base64url');
}

/** bcryptjs as Node-RED itself uses it for adminAuth (a dependency of node-red). */
function bcryptHash(password: string): string {
  const bcrypt = require(resolveFromNodeRed(nodeRedChoice(), 'bcryptjs')) as { hashSync(p: string, rounds: number): string };
  return bcrypt.hashSync(password, 10);
}

/**
 * The settings.js properties (as source text, to go inside `module.exports = { ... }`) that
 * require this login everywhere.
 */
export function authSettingsSource(login: Login): string {
  const hash = bcryptHash(login.password);
  const salt = randomBytes(16).toString('hex');
  const basic = scryptSync(Buffer.from(`${login.username}:${login.password}`), salt, 32).toString('hex');
  return `
  adminAuth: { type: 'credentials', users: [{ username: ${JSON.stringify(login.username)}, password: ${JSON.stringify(hash)}, permissions: '*' }] },
  httpNodeAuth: { user: ${JSON.stringify(login.username)}, pass: ${JSON.stringify(hash)} },
  dashboard: {
    // Dashboard 2.0's socket.io handshake: the same Basic login as its pages (httpNodeAuth), then
    // the checks its default middleware makes (no direct websocket, same origin).
    ioMiddleware: function (socket, next) {
      const crypto = require('node:crypto');
      const header = String(socket.request.headers.authorization || '');
      const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header);
      const given = m ? crypto.scryptSync(Buffer.from(m[1], 'base64'), ${JSON.stringify(salt)}, 32) : Buffer.alloc(32);
      if (!m || !crypto.timingSafeEqual(given, Buffer.from(${JSON.stringify(basic)}, 'hex'))) return next(new Error('login required'));
      if (socket.client.conn.request.url.indexOf('transport=websocket') !== -1) return socket.client.conn.close();
      if (socket.handshake.xdomain !== false) return socket.disconnect(true);
      next();
    },
  },`;
}

/** The Authorization header of the Basic login (http-in routes, dashboard). */
export function basicAuthorization(login: Login): string {
  return `Basic ${Buffer.from(`${login.username}:${login.password}`).toString('base64')}`;
}

/** Logs in to the admin API as the editor does (POST <admin>/auth/token) and returns the bearer header. */
export async function adminBearer(adminUrl: string, login: Login): Promise<string> {
  const res = await fetch(`${adminUrl}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: login.username, password: login.password }).toString(),
  });
  if (res.status !== 200) throw new Error(`admin login refused: HTTP ${res.status}`);
  const token = (await res.json()) as { access_token: string };
  return `Bearer ${token.access_token}`;
}

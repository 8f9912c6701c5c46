// A real OpenID provider for the console's browser tests: node-oidc-provider (a certified
// implementation) on 127.0.0.1, a free port. Run by tests/e2e/console_browser.rs:
//
//   node console/oidc.mjs CONFIG.json
//
// CONFIG is { "redirect_uri": "...", "client_id": "...", "client_secret": "...",
//             "users": { "LOGIN": { "roles": ["officer"], "contractor_id": "..." }, ... } }.
// When the provider listens it prints one line of JSON, { "issuer": "http://127.0.0.1:PORT" }, and
// serves until its standard input closes (the test dropping it) or it is killed.
//
// The client is a confidential one (client_secret_basic) that must use PKCE (S256). Each user's
// Doorstep roles go in the `doorstep_roles` claim and a contractor's id in
// `doorstep_contractor_id`, both in the ID token (claims of the `profile` scope, which the console
// asks for by default). Signing in is the provider's development interactions: a form that takes
// the user name (any password), then a consent form.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`oidc.mjs: ${message}\n`);
  process.exit(1);
}

const configPath = process.argv[2];
if (!configPath) fail('usage: node console/oidc.mjs CONFIG.json');
let config;
try {
  config = JSON.parse(readFileSync(configPath, 'utf8'));
} catch (error) {
  fail(`cannot read ${configPath}: ${error.message}`);
}
for (const key of ['redirect_uri', 'client_id', 'client_secret', 'users']) {
  if (!config[key]) fail(`${configPath} has no "${key}"`);
}

const users = config.users;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'browser-tests', use: 'sig', alg: 'RS256' };

// The port is known only once the server listens, and the provider needs its issuer URL first:
// listen, then build the provider and hand it the requests.
const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: [config.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    jwks: { keys: [signingKey] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'doorstep_roles', 'doorstep_contractor_id'],
    },
    // Claims of the requested scopes in the ID token itself, not only from userinfo.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    // Lifetimes in seconds, long enough for one test.
    ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 3600, IdToken: 3600 },
    async findAccount(_ctx, sub) {
      const user = users[sub];
      if (!user) return undefined;
      return {
        accountId: sub,
        async claims() {
          const claims = { sub, name: user.name ?? sub, doorstep_roles: user.roles ?? [] };
          if (user.contractor_id) claims.doorstep_contractor_id = user.contractor_id;
          return claims;
        },
      };
    },
    // The development key set and cookie keys are fine for a throw-away provider; say nothing.
    cookies: { keys: ['browser-tests-cookie-key'] },
  });
  provider.on('server_error', (_ctx, error) => process.stderr.write(`oidc.mjs: server error: ${error.stack}\n`));
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
  // The test reads only that line: anything the provider says later (it logs with console.log)
  // goes to standard error, where a closed pipe cannot end it.
  console.log = console.error;
  console.info = console.error;
  process.stdout.on('error', () => {});
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

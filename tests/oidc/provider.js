// A real OpenID Connect provider for Tidings' single sign-on tests: the certified
// `oidc-provider` package, configured from the environment, nothing mocked.
//
//   PORT           where it listens on 127.0.0.1 (0: any free port); it prints
//                  "listening on <port>" once it accepts connections
//   ISSUER         its issuer (default http://127.0.0.1:<PORT>); the tests give the
//                  address of a loopback proxy in front of it, which forwards the Host
//                  header, so every URL the provider builds is the proxy's
//   CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (space separated)   the one client
//   ACCOUNTS       JSON list of {login, sub, email, email_verified, name}; the test
//                  account TEST_EMAIL (TEST_EMAIL_VERIFIED "true"/"false") when unset
//   JWKS           JSON {"keys": [private JWK]}: the signing key, so that a test can
//                  sign ID tokens the provider's own key would (wrong issuer, audience,
//                  expiry); a fresh key when unset
//
// Signing in uses the package's devInteractions: a form with "login" (an account's
// login) and "password" (anything), which plain HTTP or a browser can complete. An
// unknown login signs in as an account with that subject and no e-mail. Consent is
// taken as given for the one client, as for a first-party application.
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT ?? 0);
const clientId = process.env.CLIENT_ID ?? 'tidings';
const clientSecret = process.env.CLIENT_SECRET ?? 'tidings-test-secret';
const redirectUris = (process.env.REDIRECT_URIS ?? '').split(/\s+/).filter(Boolean);
const accounts = process.env.ACCOUNTS
  ? JSON.parse(process.env.ACCOUNTS)
  : [{
    login: process.env.TEST_EMAIL ?? 'member@example.com',
    sub: 'test-account',
    email: process.env.TEST_EMAIL ?? 'member@example.com',
    email_verified: (process.env.TEST_EMAIL_VERIFIED ?? 'true') === 'true',
    name: 'Test Member',
  }];

if (redirectUris.length === 0) {
  console.error('Set REDIRECT_URIS to the client\'s redirect URI(s).');
  process.exit(2);
}

function accountFor(login) {
  return accounts.find((account) => account.login === login) ?? { sub: login };
}

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  scopes: ['openid', 'email', 'profile'],
  // Every client must prove the code is its own (RFC 7636), as Tidings always does.
  pkce: { required: () => true },
  cookies: { keys: ['tidings-test-provider-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const { login, ...claims } = accountFor(id);
    return { accountId: id, async claims() { return { ...claims, sub: claims.sub ?? id }; } };
  },
  // A first-party client: the grant for what it asks is made without a consent page.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
};
if (process.env.JWKS) {
  configuration.jwks = JSON.parse(process.env.JWKS);
}

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const provider = new Provider(process.env.ISSUER ?? `http://127.0.0.1:${actual}`, configuration);
  server.on('request', provider.callback());
  console.log(`listening on ${actual}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}

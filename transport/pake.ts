// Pairing's proof of the one-time code: OPAQUE (RFC 9807, @serenity-kit/opaque), a PAKE, so
// neither end shows anything a guess can be checked against offline. A man in the middle gets
// one guess per attempt, which the device counts; the code itself never travels. Both
// certificate fingerprints, as each end sees them on its TLS connection, are the protocol's
// identities: one end's view that differs from the other's (a relay in between) fails the
// exchange as a wrong code would.
//
// Three messages on the `pair` stream: the client's start (KE1), the device's answer (KE2,
// from a registration it makes for this attempt alone), the client's finish (KE3).
import { normalizePairCode } from './protocol.ts';

type Opaque = typeof import('@serenity-kit/opaque');

let loaded: Promise<Opaque> | null = null;
/** Loaded on first use: the WebAssembly module costs a few ms, and only pairing needs it. */
function opaque(): Promise<Opaque> {
  loaded ??= import('@serenity-kit/opaque').then(async (m) => {
    await m.ready;
    return m;
  });
  return loaded;
}

/**
 * The code is random (~50 bits) and good for a few attempts, so stretching it buys nothing;
 * the cheapest argon2id keeps pairing quick on a small device.
 */
const STRETCH = { 'argon2id-custom': { iterations: 1, memory: 1024, parallelism: 1 } } as const;

export interface PakeIds {
  clientFp: string;
  deviceFp: string;
}

const identifiers = (ids: PakeIds) => ({ client: ids.clientFp, server: ids.deviceFp });

/** The client's first message, and what it keeps for the finish. */
export async function clientStart(code: string): Promise<{ ke1: string; state: string }> {
  const o = await opaque();
  const r = o.client.startLogin({ password: normalizePairCode(code) });
  return { ke1: r.startLoginRequest, state: r.clientLoginState };
}

/** KE3 if the device proved it knows the code under these identities, else null. */
export async function clientFinish(
  code: string,
  state: string,
  ke2: string,
  ids: PakeIds,
): Promise<string | null> {
  const o = await opaque();
  try {
    const r = o.client.finishLogin({
      clientLoginState: state,
      loginResponse: ke2,
      password: normalizePairCode(code),
      identifiers: identifiers(ids),
      keyStretching: STRETCH,
    });
    return r?.finishLoginRequest ?? null;
  } catch {
    // A malformed answer: no proof either.
    return null;
  }
}

/** The device's answer to KE1 under its code, and what it keeps to check KE3. */
export async function deviceStart(
  code: string,
  ke1: string,
  ids: PakeIds,
): Promise<{ ke2: string; state: string }> {
  const o = await opaque();
  // The device holds the code, so it plays both parts of a registration for this attempt.
  const serverSetup = o.server.createSetup();
  const password = normalizePairCode(code);
  const reg = o.client.startRegistration({ password });
  const { registrationResponse } = o.server.createRegistrationResponse({
    serverSetup,
    userIdentifier: ids.clientFp,
    registrationRequest: reg.registrationRequest,
  });
  const { registrationRecord } = o.client.finishRegistration({
    password,
    registrationResponse,
    clientRegistrationState: reg.clientRegistrationState,
    identifiers: identifiers(ids),
    keyStretching: STRETCH,
  });
  const r = o.server.startLogin({
    serverSetup,
    registrationRecord,
    startLoginRequest: ke1,
    userIdentifier: ids.clientFp,
    identifiers: identifiers(ids),
  });
  return { ke2: r.loginResponse, state: r.serverLoginState };
}

/** Whether KE3 proves the client knew the code under these identities. */
export async function deviceFinish(state: string, ke3: string, ids: PakeIds): Promise<boolean> {
  const o = await opaque();
  try {
    o.server.finishLogin({
      serverLoginState: state,
      finishLoginRequest: ke3,
      identifiers: identifiers(ids),
    });
    return true;
  } catch {
    return false;
  }
}

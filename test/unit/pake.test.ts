// Pairing's PAKE (transport/pake.ts) end to end in one process: the real OPAQUE exchange.
import t from 'tap';
import { clientFinish, clientStart, deviceFinish, deviceStart } from '../../transport/pake.ts';

const ids = { clientFp: 'SHA256:client', deviceFp: 'SHA256:device' };

/** One whole exchange: each end with its own code and its own view of the two keys. */
async function exchange(
  clientCode: string,
  deviceCode: string,
  clientIds = ids,
  deviceIds = ids,
): Promise<{ clientSaw: boolean; deviceSaw: boolean }> {
  const c = await clientStart(clientCode);
  const d = await deviceStart(deviceCode, c.ke1, deviceIds);
  const ke3 = await clientFinish(clientCode, c.state, d.ke2, clientIds);
  return {
    clientSaw: ke3 !== null,
    deviceSaw: ke3 !== null && (await deviceFinish(d.state, ke3, deviceIds)),
  };
}

t.test('the same code: both ends are convinced', async (t) => {
  t.same(await exchange('ABCDE-FGHJK', 'ABCDE-FGHJK'), { clientSaw: true, deviceSaw: true });
  t.same(
    await exchange(' abcde fghjk', 'ABCDE-FGHJK'),
    { clientSaw: true, deviceSaw: true },
    'as typed',
  );
});

t.test(
  'a wrong code: the client sees it before it says anything that depends on the code',
  async (t) => {
    t.same(await exchange('ABCDE-FGHJM', 'ABCDE-FGHJK'), { clientSaw: false, deviceSaw: false });
  },
);

t.test("a relay in between (each end sees the relay's key): both fail, code or not", async (t) => {
  const relayed = { clientFp: 'SHA256:client', deviceFp: 'SHA256:relay' };
  t.same(await exchange('ABCDE-FGHJK', 'ABCDE-FGHJK', relayed, ids), {
    clientSaw: false,
    deviceSaw: false,
  });
  const otherClient = { clientFp: 'SHA256:relay', deviceFp: 'SHA256:device' };
  t.same(await exchange('ABCDE-FGHJK', 'ABCDE-FGHJK', ids, otherClient), {
    clientSaw: false,
    deviceSaw: false,
  });
});

t.test('a forged finish or answer proves nothing', async (t) => {
  const c = await clientStart('ABCDE-FGHJK');
  const d = await deviceStart('ABCDE-FGHJK', c.ke1, ids);
  t.equal(await deviceFinish(d.state, 'AAAA', ids), false, 'a short KE3');
  const other = await clientStart('ABCDE-FGHJK');
  const replay = await clientFinish('ABCDE-FGHJK', other.state, d.ke2, ids);
  t.equal(replay, null, "another attempt's answer");
  t.equal(await clientFinish('ABCDE-FGHJK', c.state, 'AAAA', ids), null, 'a short KE2');
  await t.rejects(deviceStart('ABCDE-FGHJK', 'AAAA', ids), 'a malformed KE1 is refused');
});

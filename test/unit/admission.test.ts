// Pairing connections of strangers: a few at once, a few a minute from one address.
import t from 'tap';
import { PAIRING_AT_ONCE, PAIRING_PER_MINUTE, PairingGate } from '../../daemon/admission.ts';

t.test('a few at once; a slot comes back when released', async (t) => {
  const g = new PairingGate();
  const slots = Array.from({ length: PAIRING_AT_ONCE }, (_, i) => g.admit(`10.0.0.${i}`, 0));
  t.ok(slots.every((s) => 'release' in s));
  t.same(g.admit('10.0.0.9', 0), { refused: 'too many pairing connections at once' });
  (slots[0] as { release: () => void }).release();
  (slots[0] as { release: () => void }).release();
  t.ok('release' in g.admit('10.0.0.9', 0), 'one released slot, once');
  t.ok('refused' in g.admit('10.0.0.10', 0), 'and no more');
});

t.test('a few a minute from one address, others unaffected', async (t) => {
  const g = new PairingGate();
  for (let i = 0; i < PAIRING_PER_MINUTE; i++) {
    const s = g.admit('192.0.2.1', i * 1000);
    t.ok('release' in s, `attempt ${i + 1}`);
    if ('release' in s) s.release();
  }
  t.match(g.admit('192.0.2.1', 30_000), { refused: /pairing attempts a minute from 192\.0\.2\.1/ });
  t.ok('release' in g.admit('192.0.2.2', 30_000), 'another address');
  t.ok('release' in g.admit('192.0.2.1', 60_500), 'the first one again a minute later');
});

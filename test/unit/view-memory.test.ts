import t from 'tap';
import { answersClose, answersCreate, answersSet, answersStats } from '../../daemon/native.ts';
import { CappedMap, ViewMemories } from '../../daemon/view-memory.ts';

t.test('a CappedMap forgets its oldest entry, never one it is updating', async (t) => {
  const m = new CappedMap<string, number>(3);
  m.set('a', 1).set('b', 2).set('c', 3);
  m.set('a', 10);
  t.same(
    [...m.entries()],
    [
      ['a', 10],
      ['b', 2],
      ['c', 3],
    ],
  );
  m.set('d', 4);
  t.same([...m.keys()], ['b', 'c', 'd']);
  t.equal(m.size, 3);
});

t.test('memories of expired leases are dropped when another lease is asked for', async (t) => {
  const mems = new ViewMemories();
  const a = mems.for('lease-a');
  t.equal(mems.for('lease-a'), a, 'the same lease, the same memory');
  Object.defineProperty(a, 'born', { value: Date.now() - 60_000 });
  const b = mems.for('lease-b');
  t.not(b, a);
  t.not(mems.for('lease-a'), a, 'an expired lease gets a new memory');
});

t.test("the tracer's answer table is bounded: when full it starts over", async (t) => {
  const table = answersCreate(0xc000003e, Buffer.alloc(0), 4, 1 << 20);
  for (let i = 0; i < 4; i++) answersSet(table, Buffer.from(`/k${i}`), 0, Buffer.alloc(8), 0);
  t.match(answersStats(table), { entries: 4, bytes: 4 * (3 + 8) });
  answersSet(table, Buffer.from('/k0'), -2, null, 0);
  t.match(answersStats(table), { entries: 4, bytes: 3 * 11 + 3 }, 'replacing keeps the count');
  answersSet(table, Buffer.from('/k4'), 0, null, 0);
  t.match(answersStats(table), { entries: 1, bytes: 3 }, 'a fifth entry starts it over');
  const small = answersCreate(0xc000003e, Buffer.alloc(0), 100, 20);
  answersSet(small, Buffer.from('/a'), 0, Buffer.alloc(10), 0);
  answersSet(small, Buffer.from('/b'), 0, Buffer.alloc(10), 0);
  t.match(answersStats(small), { entries: 1, bytes: 12 }, 'and so does passing the byte bound');
  t.throws(() => answersSet(table, Buffer.from('/x'), -5000, null, 0), /ret/);
  t.throws(() => answersSet(table, Buffer.from('/x'), 0, null, -1), /ttlMs/);
});

t.test('the answer table grows as it fills and frees everything when closed', async (t) => {
  const table = answersCreate(0xc000003e, Buffer.alloc(0), 100_000, 1 << 30);
  for (let i = 0; i < 5000; i++) answersSet(table, Buffer.from(`/k${i}`), 0, Buffer.alloc(4), 0);
  t.match(answersStats(table), { entries: 5000 });
  answersClose(table);
  t.match(answersStats(table), { entries: 0, bytes: 0 });
  answersSet(table, Buffer.from('/after'), 0, null, 0);
  t.match(answersStats(table), { entries: 0 }, 'a closed table keeps nothing');
});

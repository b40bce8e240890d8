// The content cache shared by daemons on one state directory: what one daemon handed out stays
// readable whatever the others evict, and only a daemon alone tidies the index and the files.
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ContentCache } from '../../daemon/cache.ts';

function dirs(t: Test) {
  const base = mkdtempSync(join(tmpdir(), 'tether-cache-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  return { base, cache: join(base, 'cache'), a: join(base, 'a'), b: join(base, 'b') };
}

t.test("another daemon's eviction leaves a handed-out entry readable", async (t) => {
  const d = dirs(t);
  const a = new ContentCache(d.cache, { links: d.a, limit: 10 });
  const one = a.put('1:1:6:0:0', Buffer.from('first!'));
  t.equal(one, join(d.a, '1_1_6_0_0'), 'handed out as its own link');
  const b = new ContentCache(d.cache, { links: d.b, limit: 10, shared: true });
  t.ok(b.get('1:1:6:0:0'), 'the other daemon sees the entry');
  b.put('2:2:6:0:0', Buffer.from('second'));
  t.notOk(existsSync(join(d.cache, 'files/1_1_6_0_0')), 'it evicted the first');
  t.equal(b.get('1:1:6:0:0'), null, 'and no longer has it');
  t.equal(readFileSync(a.get('1:1:6:0:0')!, 'utf8'), 'first!', 'the first daemon still reads it');
  t.equal(a.keyOf(one), '1:1:6:0:0', 'and maps its path back to the key');
});

t.test('an entry evicted before a daemon first used it is a miss, not a broken path', async (t) => {
  const d = dirs(t);
  const a = new ContentCache(d.cache, { links: d.a, limit: 10 });
  a.put('1:1:6:0:0', Buffer.from('first!'));
  // Started while the first entry was listed, and has not used it yet.
  const early = new ContentCache(d.cache, { links: join(d.base, 'early'), shared: true });
  const b = new ContentCache(d.cache, { links: d.b, limit: 10, shared: true });
  b.put('2:2:6:0:0', Buffer.from('second'));
  t.equal(early.get('1:1:6:0:0'), null);
  t.equal(early.get('2:2:6:0:0'), null, 'an entry put after it started is unknown to it');
});

t.test('only a daemon alone compacts the index and removes files it does not list', async (t) => {
  const d = dirs(t);
  const a = new ContentCache(d.cache, { links: d.a });
  a.put('1:1:1:0:0', Buffer.from('x'));
  // A killed daemon's temporary file, and an entry whose index line a compaction lost, an
  // hour ago; and one being written now by a daemon that started meanwhile.
  const hourAgo = new Date(Date.now() - 3600_000);
  for (const name of ['3_3_1_0_0.tmp99', '4_4_1_0_0']) {
    writeFileSync(join(d.cache, 'files', name), 'y');
    utimesSync(join(d.cache, 'files', name), hourAgo, hourAgo);
  }
  writeFileSync(join(d.cache, 'files/5_5_1_0_0.tmp98'), 'z');
  new ContentCache(d.cache, { links: d.b, shared: true });
  t.equal(readdirSync(join(d.cache, 'files')).length, 4, 'shared: left alone');
  new ContentCache(d.cache, { links: d.b });
  t.same(
    readdirSync(join(d.cache, 'files')).sort(),
    ['1_1_1_0_0', '5_5_1_0_0.tmp98'],
    'alone: listed entries and fresh ones stay',
  );
  t.equal(readFileSync(join(d.cache, 'index'), 'utf8').split('\n').filter(Boolean).length, 1);
});

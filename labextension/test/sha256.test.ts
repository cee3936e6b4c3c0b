import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { sha256Hex } from '../src/sha256';

function reference(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

test('matches known digests', () => {
  assert.equal(
    sha256Hex(''),
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
  );
  assert.equal(
    sha256Hex('abc'),
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
  );
});

test('matches node crypto across block boundaries and non-ASCII text', () => {
  for (const length of [1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
    const text = 'x'.repeat(length);
    assert.equal(sha256Hex(text), reference(text), `length ${length}`);
  }
  const unicode = 'print("héllo · ✓ 😀")\n';
  assert.equal(sha256Hex(unicode), reference(unicode));
});

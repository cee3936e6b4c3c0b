import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fixableCount, fixSource, hasErrorOutput } from '../src/fixSource';
import { IMagicState } from '../src/magicCheck';

const LOADED: IMagicState = { status: 'loaded', errorCounts: [4, 9] };

test('only an error output counts as an error', () => {
  assert.ok(hasErrorOutput(['stream', 'error']));
  assert.ok(!hasErrorOutput(['stream'])); // stderr warnings are streams
  assert.ok(!hasErrorOutput(['execute_result', 'display_data']));
  assert.ok(!hasErrorOutput([]));
});

test('a code cell whose error the loaded magic recorded gets the Fix action', () => {
  assert.equal(fixableCount('code', ['stream', 'error'], 4, LOADED), 4);
  assert.equal(fixableCount('code', ['error'], 9, LOADED), 9);
});

test('no Fix action without an error, a count, a code cell or a loaded magic', () => {
  assert.equal(fixableCount('code', ['stream'], 4, LOADED), null);
  assert.equal(fixableCount('code', ['error'], null, LOADED), null);
  assert.equal(fixableCount('markdown', ['error'], 4, LOADED), null);
  for (const status of ['unknown', 'absent', 'loadable'] as const) {
    assert.equal(
      fixableCount('code', ['error'], 4, { status, errorCounts: [4] }),
      null,
      status
    );
  }
});

test('an error the kernel does not know (saved from an earlier session) gets no Fix', () => {
  assert.equal(fixableCount('code', ['error'], 5, LOADED), null);
  assert.equal(
    fixableCount('code', ['error'], 5, {
      status: 'loaded',
      errorCounts: null
    }),
    5
  );
});

test('the fix cell source names the failing execution count', () => {
  assert.equal(fixSource(7), '%%generate --fix 7');
  assert.equal(fixSource(12, ''), '%%generate --fix 12');
});

test('re-fixing keeps the guidance written under an earlier fix line', () => {
  assert.equal(
    fixSource(8, "%%generate --fix 7\nthe column is called 'price'"),
    "%%generate --fix 8\nthe column is called 'price'"
  );
  assert.equal(fixSource(8, '%%generate --fix 7\n'), '%%generate --fix 8');
  // a cell that is not a fix cell is not carried over
  assert.equal(fixSource(8, 'print(1)'), '%%generate --fix 8');
});

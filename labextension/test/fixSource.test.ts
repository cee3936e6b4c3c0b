import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  cellRef,
  fixableCount,
  fixSource,
  hasErrorOutput
} from '../src/fixSource';
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

test('the fix cell names the failing cell by the head of its id', () => {
  const id = '5f0c2a9e-1b7d-4c3e-9a41-0d6f2b8e7c15';
  assert.equal(cellRef(id), 'cell:5f0c2a9e');
  assert.equal(cellRef(id, [id, 'a1b2c3d4-0000']), 'cell:5f0c2a9e');
  assert.equal(fixSource(cellRef(id)), '%%generate --fix cell:5f0c2a9e');
  // short ids (nbformat allows 1 to 64 characters) are used whole
  assert.equal(cellRef('fails', ['load', 'fails']), 'cell:fails');
});

test('the id head grows until no other cell of the notebook shares it', () => {
  assert.equal(
    cellRef('cell-1000', ['cell-100', 'cell-1000', 'cell-1001']),
    'cell:cell-1000'
  );
  assert.equal(
    cellRef('5f0c2a9e-aa', ['5f0c2a9e-ab', '5f0c2a9e-aa']),
    'cell:5f0c2a9e-aa'
  );
  assert.equal(cellRef('abcdefghij', ['abcdefghXX']), 'cell:abcdefghi');
});

test('re-fixing keeps the guidance written under an earlier fix line', () => {
  assert.equal(
    fixSource(
      'cell:5f0c2a9e',
      "%%generate --fix 7\nthe column is called 'price'"
    ),
    "%%generate --fix cell:5f0c2a9e\nthe column is called 'price'"
  );
  assert.equal(
    fixSource('cell:5f0c2a9e', '%%generate --fix cell:5f0c2a9e\n'),
    '%%generate --fix cell:5f0c2a9e'
  );
  // a cell that is not a fix cell is not carried over
  assert.equal(fixSource('cell:ab', 'print(1)'), '%%generate --fix cell:ab');
});

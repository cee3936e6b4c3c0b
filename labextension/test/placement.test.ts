import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decidePlacement,
  findSourceIndex,
  ICellFacts,
  isEdited,
  isGeneratedFor,
  withGeneratedTag
} from '../src/placement';
import { GENERATED_TAG, IGenerationInfo } from '../src/protocol';
import { sha256Hex } from '../src/sha256';

function info(sourceCell: string, code: string): IGenerationInfo {
  return {
    source_cell: sourceCell,
    generation_id: 'g',
    code_hash: sha256Hex(code),
    model: 'm',
    validation: 'pass'
  };
}

function plain(id: string, source = ''): ICellFacts {
  return { id, source, tags: [], info: undefined };
}

function generated(
  id: string,
  sourceCell: string,
  code: string,
  edited = ''
): ICellFacts {
  return {
    id,
    source: code + edited,
    tags: ['keep', GENERATED_TAG],
    info: info(sourceCell, code)
  };
}

test('findSourceIndex uses the id, else the active cell', () => {
  const cells = [plain('a'), plain('b'), plain('c')];
  assert.equal(findSourceIndex(cells, 'b', 0), 1);
  assert.equal(findSourceIndex(cells, 'zz', 0), -1);
  assert.equal(findSourceIndex(cells, null, 2), 2);
  assert.equal(findSourceIndex(cells, null, -1), -1);
  assert.equal(findSourceIndex(cells, null, 3), -1);
});

test('inserts right below when there is no generated cell', () => {
  const cells = [plain('a'), plain('b'), plain('c')];
  assert.deepEqual(decidePlacement(cells, 'b', 0), {
    kind: 'insert',
    sourceIndex: 1,
    index: 2
  });
  assert.deepEqual(decidePlacement([plain('a')], 'a', 0), {
    kind: 'insert',
    sourceIndex: 0,
    index: 1
  });
});

test('replaces the unedited generated cell right below', () => {
  const cells = [plain('a'), generated('g', 'a', 'x = 1'), plain('c')];
  assert.deepEqual(decidePlacement(cells, 'a', 2), {
    kind: 'replace',
    sourceIndex: 0,
    index: 1
  });
});

test('asks before replacing a hand-edited generated cell', () => {
  const cells = [plain('a'), generated('g', 'a', 'x = 1', '\nx += 1')];
  assert.deepEqual(decidePlacement(cells, 'a', 0), {
    kind: 'ask',
    sourceIndex: 0,
    index: 1
  });
});

test("does not touch another source's generated cell", () => {
  const cells = [plain('a'), generated('g', 'other', 'x = 1')];
  assert.deepEqual(decidePlacement(cells, 'a', 0), {
    kind: 'insert',
    sourceIndex: 0,
    index: 1
  });
});

test('a generated cell needs the tag as well as the metadata', () => {
  const untagged = { ...generated('g', 'a', 'x = 1'), tags: [] };
  assert.equal(isGeneratedFor(untagged, 'a'), false);
  assert.equal(decidePlacement([plain('a'), untagged], 'a', 0).kind, 'insert');
});

test('finds its generated cell elsewhere so there is never a second one', () => {
  const cells = [plain('a'), plain('b'), generated('g', 'a', 'y = 2')];
  assert.deepEqual(decidePlacement(cells, 'a', 0), {
    kind: 'replace',
    sourceIndex: 0,
    index: 2
  });
});

test('null source cell falls back to the active cell', () => {
  const cells = [plain('a'), plain('b'), generated('g', 'b', 'z')];
  assert.deepEqual(decidePlacement(cells, null, 1), {
    kind: 'replace',
    sourceIndex: 1,
    index: 2
  });
});

test('missing source cell is reported', () => {
  const missing = decidePlacement([plain('a')], 'nope', 0);
  assert.equal(missing.kind, 'missing');
  assert.equal(decidePlacement([], null, -1).kind, 'missing');
});

test('isEdited compares the sha256 of the source with code_hash', () => {
  assert.equal(isEdited('x = 1', info('a', 'x = 1')), false);
  assert.equal(isEdited('x = 1 ', info('a', 'x = 1')), true);
});

test('withGeneratedTag keeps tags and adds ours once', () => {
  assert.deepEqual(withGeneratedTag(['t']), ['t', GENERATED_TAG]);
  assert.deepEqual(withGeneratedTag([GENERATED_TAG]), [GENERATED_TAG]);
});

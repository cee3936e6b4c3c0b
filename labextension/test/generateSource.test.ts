import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { planGenerate, specText } from '../src/generateSource';
import { VERSION } from '../src/version';

test('specText strips a leading %%generate line only', () => {
  assert.equal(
    specText('%%generate --model x\nsum the column'),
    'sum the column'
  );
  assert.equal(specText('  \n%%generate\nplot it\n'), 'plot it');
  assert.equal(specText('plot it\n%%generate'), 'plot it\n%%generate');
  assert.equal(specText('%%generated stuff'), '%%generated stuff');
});

test('a %%generate code cell runs in place', () => {
  assert.deepEqual(planGenerate('code', '%%generate\nload a.csv'), {
    kind: 'run-in-place'
  });
});

test('markdown and plain code cells become a %%generate cell below', () => {
  assert.deepEqual(planGenerate('markdown', '## Load a.csv and plot x'), {
    kind: 'make-generate-cell',
    source: '%%generate\n## Load a.csv and plot x'
  });
  assert.deepEqual(planGenerate('code', '# count the rows\n'), {
    kind: 'make-generate-cell',
    source: '%%generate\n# count the rows'
  });
  assert.deepEqual(planGenerate('markdown', '%%generate\nspec'), {
    kind: 'make-generate-cell',
    source: '%%generate\nspec'
  });
});

test('empty cells generate nothing', () => {
  assert.deepEqual(planGenerate('markdown', '   \n'), { kind: 'empty' });
  assert.deepEqual(planGenerate('code', '%%generate\n'), { kind: 'empty' });
});

test('VERSION matches package.json', () => {
  const pkg = JSON.parse(
    readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')
  ) as { version: string };
  assert.equal(VERSION, pkg.version);
});

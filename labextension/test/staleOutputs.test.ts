import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStaleFailure, staleFailureIndexes } from '../src/staleOutputs';

const widget = {
  output_type: 'display_data',
  data: { 'application/vnd.jupyter.widget-view+json': { model_id: 'x' } }
};
const usage = {
  output_type: 'stream',
  name: 'stderr',
  text: 'UsageError: The model replied without code: ...\n'
};

test('a UsageError line and a traceback are stale failures', () => {
  assert.equal(isStaleFailure(usage), true);
  assert.equal(
    isStaleFailure({ ...usage, text: ['UsageError: x', '\n'] }),
    true
  );
  assert.equal(
    isStaleFailure({ output_type: 'error', ename: 'KeyError' }),
    true
  );
});

test('results, stdout and other stderr (warnings) stay', () => {
  assert.equal(isStaleFailure(widget), false);
  assert.equal(isStaleFailure({ ...usage, name: 'stdout' }), false);
  assert.equal(
    isStaleFailure({ ...usage, text: 'DeprecationWarning: x' }),
    false
  );
  assert.equal(isStaleFailure(null), false);
});

test('indexes come last first', () => {
  assert.deepEqual(
    staleFailureIndexes([widget, usage, widget, { output_type: 'error' }]),
    [3, 1]
  );
});

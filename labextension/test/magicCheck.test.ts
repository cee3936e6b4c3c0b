import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CHECK_EXPRESSIONS,
  readCheck,
  sameState,
  UNKNOWN_STATE
} from '../src/magicCheck';

/** An execute_reply content as ipykernel sends it for the check. */
function reply(
  expressions: Record<string, string | null>,
  status = 'ok'
): Record<string, unknown> {
  const user_expressions: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(expressions)) {
    user_expressions[name] =
      value === null
        ? {
            status: 'error',
            ename: 'NameError',
            evalue: "name 'get_ipython' is not defined",
            traceback: []
          }
        : { status: 'ok', data: { 'text/plain': value }, metadata: {} };
  }
  return { status, execution_count: 4, user_expressions, payload: [] };
}

test('the check asks whether the magic is loaded, installed, and which errors it knows', () => {
  assert.deepEqual(Object.keys(CHECK_EXPRESSIONS).sort(), [
    'errors',
    'installed',
    'loaded'
  ]);
  assert.match(CHECK_EXPRESSIONS.loaded, /magics\['cell'\]/);
});

test('a loaded magic with recorded errors', () => {
  assert.deepEqual(
    readCheck(reply({ loaded: 'True', installed: 'True', errors: '[3, 12]' })),
    { status: 'loaded', errorCounts: [3, 12] }
  );
  assert.deepEqual(
    readCheck(reply({ loaded: 'True', installed: 'True', errors: '[]' })),
    { status: 'loaded', errorCounts: [] }
  );
});

test('a loaded magic whose error list cannot be read offers every error', () => {
  assert.deepEqual(
    readCheck(reply({ loaded: 'True', installed: 'True', errors: null })),
    { status: 'loaded', errorCounts: null }
  );
  assert.deepEqual(
    readCheck(reply({ loaded: 'True', installed: 'True', errors: "{'x': 1}" })),
    { status: 'loaded', errorCounts: null }
  );
});

test('installed but not loaded is loadable, and shows no errors', () => {
  assert.deepEqual(
    readCheck(reply({ loaded: 'False', installed: 'True', errors: '[]' })),
    { status: 'loadable', errorCounts: [] }
  );
});

test('a kernel that cannot load the magic is absent', () => {
  // package not installed in the kernel's environment
  assert.equal(
    readCheck(reply({ loaded: 'False', installed: 'False', errors: '[]' }))
      ?.status,
    'absent'
  );
  // not an IPython kernel: the expressions fail
  assert.equal(
    readCheck(reply({ loaded: null, installed: null, errors: null }))?.status,
    'absent'
  );
  // a kernel that ignores user_expressions, or an error reply
  assert.equal(readCheck({ status: 'ok' })?.status, 'absent');
  assert.equal(readCheck(reply({}, 'error'))?.status, 'absent');
  assert.equal(readCheck(undefined)?.status, 'absent');
});

test('a check aborted with the queue after an error gives no answer', () => {
  assert.equal(readCheck(reply({}, 'aborted')), null);
});

test('states compare by what they show', () => {
  const a = readCheck(reply({ loaded: 'True', errors: '[3]' }))!;
  assert.ok(sameState(a, { status: 'loaded', errorCounts: [3] }));
  assert.ok(!sameState(a, { status: 'loaded', errorCounts: [3, 4] }));
  assert.ok(!sameState(a, UNKNOWN_STATE));
});

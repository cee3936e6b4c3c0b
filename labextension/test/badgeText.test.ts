import assert from 'node:assert/strict';
import { test } from 'node:test';
import { badgeText, badgeTooltip } from '../src/badgeText';
import { IGenerationInfo } from '../src/protocol';

const base: IGenerationInfo = {
  source_cell: 'a',
  generation_id: 'gen-1',
  code_hash: 'h',
  model: 'anthropic:claude-sonnet-5-5',
  validation: 'pass',
  checks: '4 checks: 4 pass',
  created: '2026-11-27T16:00:00Z',
  run: { status: 'ok', exit_code: 0, duration: 0.41 }
};

test('badge text per validation result', () => {
  assert.equal(
    badgeText(base, false),
    'generated · anthropic:claude-sonnet-5-5 · ✓ checks passed · ran in sandbox'
  );
  assert.equal(
    badgeText({ ...base, validation: 'warn' }, false),
    'generated · anthropic:claude-sonnet-5-5 · ! check warnings · ran in sandbox'
  );
  assert.equal(
    badgeText({ ...base, validation: 'fail' }, false),
    'generated · anthropic:claude-sonnet-5-5 · ✗ checks failed · ran in sandbox'
  );
});

test('badge says what was checked: static checks only, or the sandbox run', () => {
  assert.equal(
    badgeText({ ...base, run: null }, false),
    'generated · anthropic:claude-sonnet-5-5 · ✓ checks passed · static checks only'
  );
  assert.match(
    badgeText({ ...base, run: { status: 'error', exit_code: 1 } }, false),
    /· sandbox run: error$/
  );
  assert.match(
    badgeText({ ...base, run: { status: 'ok', exit_code: 2 } }, false),
    /· sandbox run: ok$/
  );
});

test('badge says edited, and ran in the kernel', () => {
  assert.equal(
    badgeText(base, true),
    'generated · anthropic:claude-sonnet-5-5 · ✓ checks passed · ran in sandbox · edited'
  );
  assert.match(
    badgeText(base, false, true),
    /· ran in the kernel, not sandboxed$/
  );
});

test('tooltip carries checks, run and id', () => {
  const tip = badgeTooltip(base, true);
  assert.match(tip, /Checks: 4 checks: 4 pass/);
  assert.match(tip, /Sandbox run: ok in 0\.41 s/);
  assert.match(tip, /Generation: gen-1/);
  assert.match(tip, /Edited by hand/);
  assert.doesNotMatch(badgeTooltip({ ...base, run: null }, false), /Sandbox/);
  assert.match(tip, /runs it in the kernel, outside the sandbox/);
});

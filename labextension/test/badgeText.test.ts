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
    'generated · anthropic:claude-sonnet-5-5 · ✓ checks passed'
  );
  assert.equal(
    badgeText({ ...base, validation: 'warn' }, false),
    'generated · anthropic:claude-sonnet-5-5 · ! check warnings'
  );
  assert.equal(
    badgeText({ ...base, validation: 'fail' }, false),
    'generated · anthropic:claude-sonnet-5-5 · ✗ checks failed'
  );
});

test('badge says edited', () => {
  assert.equal(
    badgeText(base, true),
    'generated · anthropic:claude-sonnet-5-5 · ✓ checks passed · edited'
  );
});

test('tooltip carries checks, run and id', () => {
  const tip = badgeTooltip(base, true);
  assert.match(tip, /Checks: 4 checks: 4 pass/);
  assert.match(tip, /Sandbox run: ok in 0\.41 s/);
  assert.match(tip, /Generation: gen-1/);
  assert.match(tip, /Edited by hand/);
  assert.doesNotMatch(badgeTooltip({ ...base, run: null }, false), /Sandbox/);
});

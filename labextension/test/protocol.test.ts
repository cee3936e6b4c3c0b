import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  findLlmscriptPayload,
  parseGeneration,
  readInfo
} from '../src/protocol';

const llmscript = {
  source_cell: 'cell-a',
  generation_id: 'g1',
  spec_hash: 'aa',
  code_hash: 'bb',
  model: 'anthropic:claude-sonnet-5-5',
  created: '2026-11-27T16:00:00Z',
  validation: 'pass',
  checks: '4 checks: 4 pass',
  run: null,
  record: { code: 'x = 1', usage: { input_tokens: 3 } }
};

test('parseGeneration splits off the record and keeps the rest', () => {
  const generation = parseGeneration('x = 1', llmscript);
  assert.ok(generation);
  assert.equal(generation.text, 'x = 1');
  assert.deepEqual(generation.record, llmscript.record);
  assert.equal('record' in generation.info, false);
  assert.equal(generation.info.spec_hash, 'aa');
  assert.equal(generation.info.validation, 'pass');
});

test('parseGeneration rejects malformed dicts and normalises the rest', () => {
  assert.equal(parseGeneration(3, llmscript), null);
  assert.equal(parseGeneration('x', { ...llmscript, code_hash: 1 }), null);
  assert.equal(parseGeneration('x', { ...llmscript, source_cell: 5 }), null);
  assert.equal(parseGeneration('x', [llmscript]), null);
  const loose = parseGeneration('x', {
    generation_id: 'g',
    code_hash: 'h',
    validation: 'odd'
  });
  assert.ok(loose);
  assert.equal(loose.info.source_cell, null);
  assert.equal(loose.info.validation, 'warn');
  assert.equal(loose.info.model, 'unknown model');
  assert.equal(loose.record, null);
});

test('findLlmscriptPayload picks only set_next_input payloads with llmscript', () => {
  assert.equal(findLlmscriptPayload(undefined), null);
  assert.equal(
    findLlmscriptPayload([{ source: 'set_next_input', text: 'y' }]),
    null
  );
  const found = findLlmscriptPayload([
    { source: 'page', data: {} },
    { source: 'set_next_input', text: 'x = 1', replace: false, llmscript }
  ]);
  assert.ok(found);
  assert.equal(found.index, 1);
  assert.equal(found.generation.info.generation_id, 'g1');
});

test('readInfo reads stored metadata', () => {
  assert.equal(readInfo(undefined), null);
  assert.equal(readInfo({ generation_id: 'g' }), null);
  assert.equal(readInfo({ ...llmscript })?.source_cell, 'cell-a');
});

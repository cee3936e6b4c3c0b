import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  approvedRuns,
  confirmationText,
  kernelRunRisks,
  RunGate
} from '../src/kernelRunGate';
import { IGenerationInfo } from '../src/protocol';

const ran: IGenerationInfo = {
  source_cell: 'a',
  generation_id: 'gen-1',
  code_hash: 'h',
  model: 'anthropic:claude-sonnet-5-5',
  validation: 'pass',
  run: { status: 'ok', exit_code: 0, duration: 0.4 }
};

test('a passed, sandbox-run, unedited cell runs without asking', () => {
  assert.deepEqual(kernelRunRisks(ran, false), []);
});

test('flagged, never-run, failed-run and edited cells ask', () => {
  assert.deepEqual(kernelRunRisks({ ...ran, validation: 'fail' }, false), [
    'its checks failed'
  ]);
  assert.deepEqual(kernelRunRisks({ ...ran, validation: 'warn' }, false), [
    'its checks gave warnings'
  ]);
  assert.deepEqual(kernelRunRisks({ ...ran, run: null }, false), [
    'it never ran in the sandbox (static checks only)'
  ]);
  assert.deepEqual(
    kernelRunRisks({ ...ran, run: { status: 'timeout' } }, true),
    [
      'its sandbox run did not succeed (timeout)',
      'it was edited since it was generated'
    ]
  );
});

test('the confirmation names every risky cell', () => {
  const text = confirmationText([
    { number: 3, risks: ['its checks failed'] },
    { number: 5, risks: ['it never ran in the sandbox (static checks only)'] }
  ]);
  assert.match(
    text,
    /^These generated cells will run in the kernel, NOT in the sandbox/
  );
  assert.match(text, /Cell 3: its checks failed\./);
  assert.match(text, /Cell 5: it never ran in the sandbox/);
});

test('declined: the cells before the first risky one still run', () => {
  assert.deepEqual(approvedRuns([false, false, true, false], false), [
    true,
    true,
    false,
    false
  ]);
  assert.deepEqual(approvedRuns([false, true], true), [true, true]);
  assert.deepEqual(approvedRuns([false, false], false), [true, true]);
});

test('one decision per tick, runs started in order, later batches wait', async () => {
  const decided: number[][] = [];
  const started: number[] = [];
  let answer: (v: boolean[]) => void = () => undefined;
  const gate = new RunGate<number>(
    items => {
      decided.push(items);
      if (items.includes(2)) {
        return new Promise(resolve => (answer = resolve));
      }
      return Promise.resolve(items.map(() => true));
    },
    async item => {
      started.push(item);
      return true;
    }
  );
  const all = [1, 2, 3].map(n => gate.submit(n)); // Run All: one tick
  await new Promise(resolve => setTimeout(resolve, 0));
  const later = gate.submit(4); // run while the question is open
  await new Promise(resolve => setTimeout(resolve, 0));
  assert.deepEqual(decided, [[1, 2, 3]]);
  assert.deepEqual(started, []);
  answer([true, false, false]);
  assert.deepEqual(await Promise.all(all), [true, false, false]);
  assert.equal(await later, true);
  assert.deepEqual(decided, [[1, 2, 3], [4]]);
  assert.deepEqual(started, [1, 4]);
});

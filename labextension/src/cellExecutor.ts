/**
 * The notebook cell executor, with a gate for generated cells (see kernelRunGate.ts).
 *
 * JupyterLab and Notebook 7 run every cell (▶, Shift+Enter, Run All) through the
 * one INotebookCellExecutor; its core provider is frozen, so this plugin provides
 * its own (package.json's `disabledExtensions` turns the core one off) that calls
 * the core `runCell` for every cell, after asking about risky generated cells. A
 * generated cell run this way is marked "ran in the kernel, not sandboxed".
 */
import { JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Cell } from '@jupyterlab/cells';
import { INotebookCellExecutor, runCell } from '@jupyterlab/notebook';
import { markKernelRun } from './badges';
import { factsOf } from './cellFacts';
import {
  approvedRuns,
  confirmationText,
  IRiskyCell,
  kernelRunRisks,
  RunGate
} from './kernelRunGate';
import { isEdited } from './placement';
import { GENERATED_TAG, IGenerationInfo, readInfo } from './protocol';
import { sha256Hex } from './sha256';

type Options = INotebookCellExecutor.IRunCellOptions;

/** Cells (by id and source) the user already agreed to run in the kernel. */
const confirmed = new Set<string>();

function generatedInfo(cell: Cell): IGenerationInfo | null {
  const facts = factsOf(cell.model);
  return facts.tags.includes(GENERATED_TAG) ? readInfo(facts.info) : null;
}

function confirmKey(cell: Cell): string {
  return `${cell.model.id}:${sha256Hex(cell.model.sharedModel.getSource())}`;
}

function risksOf(options: Options): string[] {
  const info = generatedInfo(options.cell);
  if (!info || confirmed.has(confirmKey(options.cell))) {
    return [];
  }
  const source = options.cell.model.sharedModel.getSource();
  return kernelRunRisks(info, isEdited(source, info));
}

async function approve(batch: Options[]): Promise<boolean[]> {
  const risks = batch.map(risksOf);
  const risky = risks.map(r => r.length > 0);
  if (!risky.includes(true)) {
    return risky.map(() => true);
  }
  const cells: IRiskyCell[] = [];
  batch.forEach((options, index) => {
    if (risky[index]) {
      const number =
        Array.from(options.notebook.cells).indexOf(options.cell.model) + 1;
      cells.push({ number, risks: risks[index] });
    }
  });
  const result = await showDialog({
    title: 'Run generated code in the kernel, outside the sandbox?',
    body: confirmationText(cells),
    buttons: [
      Dialog.cancelButton({ label: 'Do not run' }),
      Dialog.warnButton({ label: 'Run in the kernel' })
    ]
  });
  const yes = result.button.accept;
  if (yes) {
    batch.forEach((options, index) => {
      if (risky[index]) {
        confirmed.add(confirmKey(options.cell));
      }
    });
  }
  return approvedRuns(risky, yes);
}

function run(options: Options): Promise<boolean> {
  const cell = options.cell;
  if (generatedInfo(cell)) {
    markKernelRun(cell);
  }
  return runCell(options);
}

const gate = new RunGate<Options>(approve, run);

export const cellExecutorPlugin: JupyterFrontEndPlugin<INotebookCellExecutor> =
  {
    id: 'llmscript-magic:cell-executor',
    description:
      'Runs notebook cells; asks before a risky generated cell runs in the kernel.',
    autoStart: true,
    provides: INotebookCellExecutor,
    activate: (): INotebookCellExecutor =>
      Object.freeze({ runCell: (options: Options) => gate.submit(options) })
  };

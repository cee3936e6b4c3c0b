/**
 * "Fix with llmscript": add a `%%generate --fix cell:ID` cell right below the
 * cell that raised (ID: the failing cell's id, see cellRef), and run it. Its generated code then lands below it like for
 * any %%generate cell. Fixing the same cell again reuses that cell (found by
 * metadata.llmscript_from, as "Generate code from this cell" does), keeping
 * any guidance the user wrote under its first line.
 */
import { ICodeCellModel } from '@jupyterlab/cells';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { cellRef, fixableCount, fixSource } from './fixSource';
import { stateOfKernel } from './magicPresence';
import { FROM_KEY } from './protocol';

/** Output types of a cell model ([] for markdown and raw cells). */
export function outputTypesOf(model: { type: string }): string[] {
  if (model.type !== 'code') {
    return [];
  }
  const outputs = (model as ICodeCellModel).outputs;
  const types: string[] = [];
  for (let i = 0; i < outputs.length; i++) {
    types.push(outputs.get(i).type);
  }
  return types;
}

/** The count to fix in `cellId` of `panel`, or null if it gets no Fix action. */
export function fixableCountOf(
  panel: NotebookPanel,
  model: { type: string; id: string }
): number | null {
  return fixableCount(
    model.type,
    outputTypesOf(model),
    model.type === 'code' ? (model as ICodeCellModel).executionCount : null,
    stateOfKernel(panel.sessionContext.session?.kernel)
  );
}

export async function fixCell(
  panel: NotebookPanel,
  cellId: string
): Promise<void> {
  const notebook = panel.content;
  const model = notebook.model;
  if (!model) {
    return;
  }
  const cells = Array.from(model.cells);
  const index = cells.findIndex(cell => cell.id === cellId);
  const count = index < 0 ? null : fixableCountOf(panel, cells[index]);
  if (count === null) {
    return; // the cell ran again (or the kernel restarted) since the button was drawn
  }
  const ref = cellRef(
    cellId,
    cells.map(cell => cell.id)
  );
  const below = cells[index + 1];
  if (
    below !== undefined &&
    below.type === 'code' &&
    below.getMetadata(FROM_KEY) === cellId
  ) {
    below.sharedModel.setSource(fixSource(ref, below.sharedModel.getSource()));
  } else {
    model.sharedModel.insertCell(index + 1, {
      cell_type: 'code',
      source: fixSource(ref),
      metadata: { trusted: false, [FROM_KEY]: cellId }
    });
  }
  notebook.activeCellIndex = index + 1;
  notebook.deselectAll();
  await NotebookActions.run(notebook, panel.sessionContext);
}

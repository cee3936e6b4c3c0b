/**
 * Widget buttons that need the notebook, answered on the "llmscript" comm:
 * "source" (Run in sandbox runs what the generated cell holds now, edits
 * included) and "insert-copy" (a new, unlinked cell below the generated one).
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { cellFacts } from './cellFacts';
import { findSourceIndex, isEdited, isGeneratedFor } from './placement';
import { readInfo } from './protocol';

export type CellReply =
  | { ok: true; cell_id: string; text: string; edited: boolean }
  | { ok: true; cell_id: string; replaced: false }
  | { ok: false; reason: string };

/** Index of the generated cell linked to `sourceCell` (right below first), or -1. */
function generatedIndex(
  panel: NotebookPanel,
  sourceCell: string | null
): number {
  const model = panel.content.model;
  if (!model || sourceCell === null) {
    return -1;
  }
  const cells = cellFacts(model);
  const sourceIndex = findSourceIndex(cells, sourceCell, -1);
  if (sourceIndex < 0) {
    return -1;
  }
  const below = cells[sourceIndex + 1];
  if (below !== undefined && isGeneratedFor(below, sourceCell)) {
    return sourceIndex + 1;
  }
  return cells.findIndex(cell => isGeneratedFor(cell, sourceCell));
}

/** The generated cell's current text, and whether it differs from what was generated. */
export function cellSource(
  panel: NotebookPanel,
  sourceCell: string | null
): CellReply {
  const index = generatedIndex(panel, sourceCell);
  const model = panel.content.model;
  if (!model || index < 0) {
    return { ok: false, reason: 'no generated cell below the %%generate cell' };
  }
  const cell = model.cells.get(index);
  const text = cell.sharedModel.getSource();
  const info = readInfo(cell.getMetadata('llmscript'));
  return {
    ok: true,
    cell_id: cell.id,
    text,
    edited: info !== null && isEdited(text, info)
  };
}

/** Insert `text` as an ordinary code cell below the generated cell (or the source cell). */
export function insertCopy(
  panel: NotebookPanel,
  sourceCell: string | null,
  text: string
): CellReply {
  const model = panel.content.model;
  if (!model) {
    return { ok: false, reason: 'notebook has no model' };
  }
  let index = generatedIndex(panel, sourceCell);
  if (index < 0) {
    index = findSourceIndex(cellFacts(model), sourceCell, -1);
  }
  if (index < 0) {
    return { ok: false, reason: 'source cell not found in this notebook' };
  }
  const shared = model.sharedModel.insertCell(index + 1, {
    cell_type: 'code',
    source: text,
    metadata: { trusted: false }
  });
  return { ok: true, cell_id: shared.getId(), replaced: false };
}

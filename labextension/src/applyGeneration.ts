/**
 * Put one generation into a notebook: insert the generated cell below its
 * %%generate cell, or replace the one already there (asking first if it was
 * edited by hand), and store the generation record on the %%generate cell.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { ICodeCellModel } from '@jupyterlab/cells';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { PartialJSONObject } from '@lumino/coreutils';
import { cellFacts, tagsOf } from './cellFacts';
import { decidePlacement, withGeneratedTag } from './placement';
import {
  GENERATED_TAG,
  IGeneration,
  IGenerationInfo,
  INFO_KEY,
  RECORD_KEY
} from './protocol';

export type ApplyResult =
  | { ok: true; cellId: string; replaced: boolean }
  | { ok: false; reason: string; cellId?: string };

/** Generations already applied in this window (a notebook may have two views). */
const applied = new Map<string, Promise<ApplyResult>>();

async function askOverwrite(): Promise<boolean> {
  const result = await showDialog({
    title: 'Overwrite your edits?',
    body:
      'The generated cell below this %%generate cell was edited by hand. ' +
      'Replace it with the newly generated code?',
    buttons: [
      Dialog.cancelButton({ label: 'Keep mine' }),
      Dialog.warnButton({ label: 'Overwrite' })
    ]
  });
  return result.button.accept;
}

function asJSON(info: IGenerationInfo): PartialJSONObject {
  return JSON.parse(JSON.stringify(info)) as PartialJSONObject;
}

function replaceCell(
  model: INotebookModel,
  index: number,
  text: string,
  info: IGenerationInfo
): string {
  const cell = model.cells.get(index);
  model.sharedModel.transact(() => {
    cell.sharedModel.setSource(text);
    cell.setMetadata(INFO_KEY, asJSON(info));
    cell.setMetadata('tags', withGeneratedTag(tagsOf(cell)));
    if (cell.type === 'code') {
      const code = cell as ICodeCellModel;
      code.outputs.clear();
      code.executionCount = null;
    }
  });
  return cell.id;
}

function insertCell(
  model: INotebookModel,
  index: number,
  text: string,
  info: IGenerationInfo
): string {
  const shared = model.sharedModel.insertCell(index, {
    cell_type: 'code',
    source: text,
    metadata: {
      trusted: false,
      tags: [GENERATED_TAG],
      [INFO_KEY]: asJSON(info)
    }
  });
  return shared.getId();
}

async function apply(
  panel: NotebookPanel,
  generation: IGeneration
): Promise<ApplyResult> {
  const notebook = panel.content;
  const model = notebook.model;
  if (!model) {
    return { ok: false, reason: 'notebook has no model' };
  }
  const sourceCell = generation.info.source_cell;
  let placement = decidePlacement(
    cellFacts(model),
    sourceCell,
    notebook.activeCellIndex
  );
  if (placement.kind === 'missing') {
    return { ok: false, reason: placement.reason };
  }
  const sourceModel = model.cells.get(placement.sourceIndex);
  const sourceId = sourceModel.id;
  if (placement.kind === 'ask') {
    const cellId = model.cells.get(placement.index).id;
    if (!(await askOverwrite())) {
      return { ok: false, reason: 'kept hand edits', cellId };
    }
    // The notebook may have changed while the dialog was open.
    placement = decidePlacement(cellFacts(model), sourceId, -1);
    if (placement.kind === 'missing') {
      return { ok: false, reason: placement.reason };
    }
  }
  const info: IGenerationInfo = { ...generation.info, source_cell: sourceId };
  const replaced = placement.kind !== 'insert';
  const cellId = replaced
    ? replaceCell(model, placement.index, generation.text, info)
    : insertCell(model, placement.index, generation.text, info);
  if (generation.record) {
    model.cells
      .get(placement.sourceIndex)
      .setMetadata(RECORD_KEY, generation.record as PartialJSONObject);
  }
  return { ok: true, cellId, replaced };
}

/** Apply a generation once per window, whichever route delivered it. */
export function applyGeneration(
  panel: NotebookPanel,
  generation: IGeneration
): Promise<ApplyResult> {
  const key = generation.info.generation_id;
  let result = applied.get(key);
  if (!result) {
    result = apply(panel, generation).catch((error: unknown): ApplyResult => ({
      ok: false,
      reason: String(error)
    }));
    applied.set(key, result);
    if (applied.size > 200) {
      applied.delete(applied.keys().next().value as string);
    }
  }
  return result;
}

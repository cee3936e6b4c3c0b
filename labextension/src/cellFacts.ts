/**
 * Read a notebook model's cells into the plain facts placement.ts decides on.
 */
import { ICellModel } from '@jupyterlab/cells';
import { INotebookModel } from '@jupyterlab/notebook';
import { ICellFacts } from './placement';
import { INFO_KEY } from './protocol';

export function tagsOf(cell: ICellModel): string[] {
  const tags = cell.getMetadata('tags');
  return Array.isArray(tags)
    ? tags.filter((tag): tag is string => typeof tag === 'string')
    : [];
}

export function factsOf(cell: ICellModel): ICellFacts {
  return {
    id: cell.id,
    source: cell.sharedModel.getSource(),
    tags: tagsOf(cell),
    info: cell.getMetadata(INFO_KEY)
  };
}

export function cellFacts(model: INotebookModel): ICellFacts[] {
  return Array.from(model.cells, factsOf);
}

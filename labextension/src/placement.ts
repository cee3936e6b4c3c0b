/**
 * Where a generation goes (pure): find the %%generate cell, then decide
 * between inserting a new cell, replacing the existing generated cell, or
 * asking first because that cell was edited by hand.
 */
import { GENERATED_TAG, IGenerationInfo, readInfo } from './protocol';
import { sha256Hex } from './sha256';

/** The few facts about a notebook cell that the decision needs. */
export interface ICellFacts {
  id: string;
  source: string;
  tags: readonly string[];
  /** The cell's metadata.llmscript value, unparsed. */
  info: unknown;
}

export type Placement =
  | { kind: 'insert'; sourceIndex: number; index: number }
  | { kind: 'replace'; sourceIndex: number; index: number }
  | { kind: 'ask'; sourceIndex: number; index: number }
  | { kind: 'missing'; reason: string };

/**
 * Index of the %%generate cell: the cell with id `sourceCell`, or the active
 * cell when the kernel did not know the id. -1 when there is none.
 */
export function findSourceIndex(
  cells: readonly ICellFacts[],
  sourceCell: string | null,
  activeIndex: number
): number {
  if (sourceCell !== null) {
    return cells.findIndex(cell => cell.id === sourceCell);
  }
  return activeIndex >= 0 && activeIndex < cells.length ? activeIndex : -1;
}

/** Whether `cell` is the generated cell of the source cell `sourceId`. */
export function isGeneratedFor(cell: ICellFacts, sourceId: string): boolean {
  const info = readInfo(cell.info);
  return (
    cell.tags.includes(GENERATED_TAG) &&
    info !== null &&
    info.source_cell === sourceId
  );
}

/** Whether a generated cell's source differs from the code it was given. */
export function isEdited(source: string, info: IGenerationInfo): boolean {
  return sha256Hex(source) !== info.code_hash;
}

/**
 * Decide what to do with a generation whose source cell id is `sourceCell`.
 *
 * The generated cell right below the source cell is the one to replace; if
 * it is not right below (the user moved it) but exists elsewhere, that one
 * is replaced, so a source cell never gets two generated cells.
 */
export function decidePlacement(
  cells: readonly ICellFacts[],
  sourceCell: string | null,
  activeIndex: number
): Placement {
  const sourceIndex = findSourceIndex(cells, sourceCell, activeIndex);
  if (sourceIndex < 0) {
    return {
      kind: 'missing',
      reason:
        sourceCell === null
          ? 'no active cell'
          : `source cell ${sourceCell} not found`
    };
  }
  const sourceId = cells[sourceIndex].id;
  let index = -1;
  const below = cells[sourceIndex + 1];
  if (below !== undefined && isGeneratedFor(below, sourceId)) {
    index = sourceIndex + 1;
  } else {
    index = cells.findIndex(
      (cell, i) => i !== sourceIndex && isGeneratedFor(cell, sourceId)
    );
  }
  if (index < 0) {
    return { kind: 'insert', sourceIndex, index: sourceIndex + 1 };
  }
  const existing = cells[index];
  const info = readInfo(existing.info);
  if (info !== null && isEdited(existing.source, info)) {
    return { kind: 'ask', sourceIndex, index };
  }
  return { kind: 'replace', sourceIndex, index };
}

/** The tags of a generated cell: the old ones plus GENERATED_TAG. */
export function withGeneratedTag(tags: readonly string[]): string[] {
  return tags.includes(GENERATED_TAG) ? [...tags] : [...tags, GENERATED_TAG];
}

/**
 * The "Fix with llmscript" action's plain decisions (pure, no DOM): which
 * outputs count as an error, whether a cell gets the action, and the source
 * of the `%%generate --fix cell:ID` cell it adds.
 */
import { IMagicState } from './magicCheck';

const FIX_LINE = /^\s*%%generate\s+--fix\b[^\n]*(\n|$)/;

/**
 * Only an `error` output (an exception the cell raised) counts; a stream
 * written to stderr is often a warning or a progress bar, and --fix could not
 * find it in the kernel's error log anyway.
 */
export function hasErrorOutput(outputTypes: readonly string[]): boolean {
  return outputTypes.includes('error');
}

/**
 * The execution count to fix, or null when the cell gets no Fix action: the
 * magic must be loaded, the cell must show an error with an execution count,
 * and the kernel must know that error (an error saved in the notebook from an
 * earlier kernel session, or raised before %load_ext, cannot be fixed).
 */
export function fixableCount(
  cellType: string,
  outputTypes: readonly string[],
  executionCount: number | null | undefined,
  state: IMagicState
): number | null {
  if (
    state.status !== 'loaded' ||
    cellType !== 'code' ||
    typeof executionCount !== 'number' ||
    executionCount < 1 ||
    !hasErrorOutput(outputTypes)
  ) {
    return null;
  }
  if (
    state.errorCounts !== null &&
    !state.errorCounts.includes(executionCount)
  ) {
    return null;
  }
  return executionCount;
}

/** Characters of a cell id the fix line shows, at least (a UUID's first group). */
export const CELL_REF_CHARS = 8;

/**
 * `cell:` and the shortest head of `cellId` (at least CELL_REF_CHARS
 * characters) that no other cell id of the notebook starts with. The kernel
 * finds the failing cell by that id (sent with each run as `cellId`): unlike
 * an execution count, it still names the same cell after a kernel restart or
 * a Run All.
 */
export function cellRef(
  cellId: string,
  allIds: readonly string[] = []
): string {
  const others = allIds.filter(id => id !== cellId);
  let n = Math.min(CELL_REF_CHARS, cellId.length);
  while (
    n < cellId.length &&
    others.some(id => id.startsWith(cellId.slice(0, n)))
  ) {
    n++;
  }
  return `cell:${cellId.slice(0, n)}`;
}

/**
 * `%%generate --fix cell:ID`, keeping any guidance the user wrote under the
 * first line of an earlier fix cell (re-fixing the same cell reuses that cell).
 */
export function fixSource(ref: string, previous = ''): string {
  const line = `%%generate --fix ${ref}`;
  const body = FIX_LINE.test(previous) ? previous.replace(FIX_LINE, '') : '';
  return body.trim() ? `${line}\n${body}` : line;
}

/**
 * The "Fix with llmscript" action's plain decisions (pure, no DOM): which
 * outputs count as an error, whether a cell gets the action, and the source
 * of the `%%generate --fix N` cell it adds.
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

/**
 * `%%generate --fix N`, keeping any guidance the user wrote under the first
 * line of an earlier fix cell (re-fixing the same cell reuses that cell).
 */
export function fixSource(count: number, previous = ''): string {
  const line = `%%generate --fix ${count}`;
  const body = FIX_LINE.test(previous) ? previous.replace(FIX_LINE, '') : '';
  return body.trim() ? `${line}\n${body}` : line;
}

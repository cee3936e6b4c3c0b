/**
 * A new result replaces the failure it follows (pure, no DOM).
 *
 * A `%%generate` cell that failed shows a red `UsageError` (IPython writes it to
 * stderr) or a traceback. When the widget's Regenerate then succeeds, that output
 * would stay under a widget that says "passed", be saved, and show again on
 * reopening; so the outputs of the earlier failure are dropped.
 */

interface IOutputLike {
  output_type?: unknown;
  name?: unknown;
  text?: unknown;
}

/** Whether a saved output is the report of an earlier failure of the cell. */
export function isStaleFailure(output: unknown): boolean {
  const o = (output ?? {}) as IOutputLike;
  if (o.output_type === 'error') {
    return true;
  }
  const text = Array.isArray(o.text) ? o.text.join('') : o.text;
  return (
    o.output_type === 'stream' &&
    o.name === 'stderr' &&
    typeof text === 'string' &&
    text.startsWith('UsageError:')
  );
}

/** Indexes to remove, last first (so earlier indexes stay valid while removing). */
export function staleFailureIndexes(outputs: readonly unknown[]): number[] {
  const found: number[] = [];
  outputs.forEach((output, index) => {
    if (isStaleFailure(output)) {
      found.unshift(index);
    }
  });
  return found;
}

/**
 * What the "Generate code from this cell" command does with a cell (pure).
 */

const GENERATE_LINE = /^\s*%%generate\b[^\n]*(\n|$)/;

export type GeneratePlan =
  | { kind: 'run-in-place' }
  | { kind: 'make-generate-cell'; source: string }
  | { kind: 'empty' };

/** The spec text of a cell: its text without a leading %%generate line. */
export function specText(text: string): string {
  return text.replace(GENERATE_LINE, '').trim();
}

/**
 * A code cell that already starts with %%generate is run where it is; any
 * other cell (markdown, raw or code) gets a `%%generate` code cell below it.
 */
export function planGenerate(cellType: string, text: string): GeneratePlan {
  const spec = specText(text);
  if (!spec) {
    return { kind: 'empty' };
  }
  if (cellType === 'code' && GENERATE_LINE.test(text)) {
    return { kind: 'run-in-place' };
  }
  return { kind: 'make-generate-cell', source: `%%generate\n${spec}` };
}

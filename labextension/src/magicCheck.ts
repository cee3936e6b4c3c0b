/**
 * Does this notebook's kernel have the %%generate magic? (pure, no DOM)
 *
 * One silent execute with user_expressions answers it: silent runs do not
 * bump the execution count, are not stored in history and do not trigger the
 * kernel's post-run hooks (so they never show up as a cell or an error).
 * The answer decides what the extension shows: the Fix action only where
 * the magic is loaded, the Generate button where it is loaded or loadable.
 */

/** The magic is registered in this kernel right now. */
export const LOADED_EXPRESSION =
  "'generate' in get_ipython().magics_manager.magics['cell']";
/** The package can be imported here, so %load_ext would work (nothing is imported). */
export const INSTALLED_EXPRESSION =
  "__import__('importlib.util').util.find_spec('llmscript_magic') is not None";
/**
 * Execution counts whose error the magic recorded (what `--fix N` can fix).
 * Evaluated only where the package is already imported.
 */
export const ERRORS_EXPRESSION =
  "__import__('llmscript_magic._notebook.cells', fromlist=['error_log']).error_log(get_ipython()).counts() if 'llmscript_magic._notebook.cells' in __import__('sys').modules else []";

export const CHECK_EXPRESSIONS: Record<string, string> = {
  loaded: LOADED_EXPRESSION,
  installed: INSTALLED_EXPRESSION,
  errors: ERRORS_EXPRESSION
};

/**
 * unknown: not asked yet (or the kernel restarted); absent: the kernel cannot
 * load the magic (not IPython, or the package is not installed there);
 * loadable: installed but not loaded; loaded: `%%generate` works now.
 */
export type MagicStatus = 'unknown' | 'absent' | 'loadable' | 'loaded';

export interface IMagicState {
  status: MagicStatus;
  /** Counts the kernel can fix, or null if it could not tell (then any error may be offered). */
  errorCounts: number[] | null;
}

export const UNKNOWN_STATE: IMagicState = {
  status: 'unknown',
  errorCounts: []
};

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The text/plain repr of one user expression, or null if it failed. */
function plainValue(expressions: unknown, name: string): string | null {
  if (!isObject(expressions)) {
    return null;
  }
  const entry = expressions[name];
  if (!isObject(entry) || entry.status !== 'ok' || !isObject(entry.data)) {
    return null;
  }
  const text = entry.data['text/plain'];
  return typeof text === 'string' ? text : null;
}

/** A Python list of ints as repr'd by the kernel ('[3, 7]'), or null. */
function parseCounts(text: string | null): number[] | null {
  if (text === null || !/^\[[\d,\s]*\]$/.test(text.trim())) {
    return null;
  }
  return (text.match(/\d+/g) ?? []).map(Number);
}

/**
 * Read the execute_reply content of the check into a state, or null when the
 * kernel did not answer it: after a cell raises during "Run all", ipykernel
 * aborts every request still queued, the check included; ask again then.
 */
export function readCheck(content: unknown): IMagicState | null {
  if (isObject(content) && content.status === 'aborted') {
    return null;
  }
  if (!isObject(content) || content.status !== 'ok') {
    return { status: 'absent', errorCounts: [] };
  }
  const expressions = content.user_expressions;
  if (plainValue(expressions, 'loaded') === 'True') {
    return {
      status: 'loaded',
      errorCounts: parseCounts(plainValue(expressions, 'errors'))
    };
  }
  const installed = plainValue(expressions, 'installed') === 'True';
  return { status: installed ? 'loadable' : 'absent', errorCounts: [] };
}

/** Whether two states would show the same thing. */
export function sameState(a: IMagicState, b: IMagicState): boolean {
  return (
    a.status === b.status &&
    JSON.stringify(a.errorCounts) === JSON.stringify(b.errorCounts)
  );
}

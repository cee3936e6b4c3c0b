/**
 * "Generate code from this cell": turn the active cell's text into a
 * %%generate cell and run it.
 *
 * A code cell that starts with %%generate is run where it is. Any other cell
 * (markdown, raw, or code without %%generate) gets a `%%generate\n<text>`
 * code cell right below it (reused on later runs, found by its
 * metadata.llmscript_from), which is then run; the generated code lands
 * below that, as for a hand-written %%generate cell.
 */
import { Notification } from '@jupyterlab/apputils';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { planGenerate } from './generateSource';
import { LOADED_EXPRESSION, readCheck } from './magicCheck';
import { FROM_KEY } from './protocol';

const LOAD_MAGIC = '%load_ext llmscript_magic';

async function ensureMagicLoaded(panel: NotebookPanel): Promise<boolean> {
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    Notification.error('Generate code: this notebook has no kernel.');
    return false;
  }
  // Asks in the same request whether the magic is registered afterwards:
  // `%load_ext` of a module that is not an extension only prints a line.
  const reply = await kernel.requestExecute({
    code: LOAD_MAGIC,
    silent: true,
    store_history: false,
    user_expressions: { loaded: LOADED_EXPRESSION }
  }).done;
  if (readCheck(reply.content)?.status !== 'loaded') {
    // One line that says how to fix it (the usual cause: the kernel's
    // environment lacks the package, or it is another language's kernel);
    // the detail goes last, as notifications are cut at 140 characters.
    const detail =
      reply.content.status === 'error'
        ? reply.content.ename
        : reply.content.status === 'ok'
          ? '%%generate not registered'
          : reply.content.status;
    Notification.error(
      `Cannot load the magic in this kernel: install llmscript-magic in its environment, then run ${LOAD_MAGIC} (${detail})`
    );
    return false;
  }
  return true;
}

/** Index of the %%generate cell to run, creating or updating it if needed. */
function prepareGenerateCell(panel: NotebookPanel): number | null {
  const notebook = panel.content;
  const model = notebook.model;
  const cell = notebook.activeCell;
  if (!model || !cell) {
    return null;
  }
  const index = notebook.activeCellIndex;
  const plan = planGenerate(
    cell.model.type,
    cell.model.sharedModel.getSource()
  );
  if (plan.kind === 'empty') {
    Notification.warning(
      'Generate code: the active cell has no text to generate from.'
    );
    return null;
  }
  if (plan.kind === 'run-in-place') {
    return index;
  }
  const below =
    index + 1 < model.cells.length ? model.cells.get(index + 1) : null;
  if (
    below &&
    below.type === 'code' &&
    below.getMetadata(FROM_KEY) === cell.model.id
  ) {
    below.sharedModel.setSource(plan.source);
  } else {
    model.sharedModel.insertCell(index + 1, {
      cell_type: 'code',
      source: plan.source,
      metadata: { trusted: false, [FROM_KEY]: cell.model.id }
    });
  }
  return index + 1;
}

export async function generateFromCell(panel: NotebookPanel): Promise<void> {
  // Load first: in a kernel that cannot load the magic, add no cell at all.
  if (!(await ensureMagicLoaded(panel))) {
    return;
  }
  const index = prepareGenerateCell(panel);
  if (index === null) {
    return;
  }
  const notebook = panel.content;
  notebook.activeCellIndex = index;
  notebook.deselectAll();
  await NotebookActions.run(notebook, panel.sessionContext);
}

/**
 * The visible "Fix with llmscript" button under a traceback: placed in the
 * cell footer (empty and zero-height in JupyterLab and Notebook 7, like the
 * header the badges use), on code cells that show an error the kernel's
 * magic can fix. Redrawn when outputs, execution counts, the kernel or its
 * magic state change.
 */
import { Cell, ICellModel, ICodeCellModel } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { fixableCountOf, fixCell } from './fixCommand';
import { cellRef } from './fixSource';
import { presenceOf } from './magicPresence';

const FIXABLE_CLASS = 'llmscript-mod-fixable';
const BUTTON_CLASS = 'llmscript-fix-button';

function footerOf(cell: Cell): HTMLElement | null {
  return cell.node.querySelector<HTMLElement>(':scope > .jp-CellFooter');
}

function updateCell(panel: NotebookPanel, cell: Cell): void {
  const count = fixableCountOf(panel, cell.model);
  let button = cell.node.querySelector<HTMLButtonElement>(`.${BUTTON_CLASS}`);
  if (count === null) {
    cell.removeClass(FIXABLE_CLASS);
    button?.remove();
    return;
  }
  const host = footerOf(cell);
  if (!host) {
    // Windowed notebooks build a cell's DOM when it is first rendered.
    void cell.ready.then(() => updateCell(panel, cell));
    return;
  }
  cell.addClass(FIXABLE_CLASS);
  if (!button) {
    button = document.createElement('button');
    button.type = 'button';
    button.className = BUTTON_CLASS;
    button.textContent = '✦ Fix with llmscript';
    const cellId = cell.model.id;
    button.addEventListener('click', event => {
      event.stopPropagation();
      void fixCell(panel, cellId);
    });
  }
  if (button.parentElement !== host) {
    host.appendChild(button);
  }
  button.dataset.count = String(count);
  const ids = Array.from(panel.content.model?.cells ?? [], c => c.id);
  const ref = cellRef(cell.model.id, ids);
  button.title = `Add "%%generate --fix ${ref}" below this cell and run it: the model writes a fixed version of In [${count}] (the cell id still names it after a kernel restart or Run All)`;
}

/** Keep the Fix buttons of one notebook panel up to date. */
export function trackFixButtons(panel: NotebookPanel): void {
  const watched = new WeakSet<ICellModel>();
  let timer: number | undefined;
  let unwatchKernel: (() => void) | null = null;

  const refresh = (): void => {
    timer = undefined;
    if (panel.isDisposed) {
      return;
    }
    for (const cell of panel.content.widgets) {
      watch(cell.model);
      updateCell(panel, cell);
    }
  };
  const schedule = (): void => {
    if (timer === undefined) {
      timer = window.setTimeout(refresh, 30);
    }
  };
  const watch = (model: ICellModel): void => {
    if (watched.has(model) || model.type !== 'code') {
      return;
    }
    watched.add(model);
    const code = model as ICodeCellModel;
    code.outputs.changed.connect(schedule);
    code.stateChanged.connect(schedule); // executionCount
  };
  const watchKernel = (kernel: Kernel.IKernelConnection | null): void => {
    unwatchKernel?.();
    unwatchKernel = kernel ? presenceOf(kernel).onChange(schedule) : null;
    schedule();
  };

  const connectModel = (): void => {
    panel.content.model?.cells.changed.connect(schedule);
    schedule();
  };
  panel.content.modelChanged.connect(connectModel);
  connectModel();
  panel.sessionContext.kernelChanged.connect((_, change) =>
    watchKernel(change.newValue)
  );
  watchKernel(panel.sessionContext.session?.kernel ?? null);
  panel.disposed.connect(() => unwatchKernel?.());
}

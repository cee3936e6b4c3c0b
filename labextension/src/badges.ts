/**
 * Mark generated cells: a CSS class on the cell and a badge in its header,
 * kept up to date as the cell is edited.
 */
import { Cell, ICellModel } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { factsOf } from './cellFacts';
import { badgeText, badgeTooltip } from './badgeText';
import { isEdited } from './placement';
import { GENERATED_TAG, readInfo } from './protocol';

const GENERATED_CLASS = 'llmscript-generated-cell';
const EDITED_CLASS = 'llmscript-mod-edited';
const BADGE_CLASS = 'llmscript-badge';
/** A generated cell run in the kernel (by ▶ or Run All): not sandboxed. */
const KERNEL_RUN_CLASS = 'llmscript-mod-kernel-run';

/** The cell header, or null while the cell is still a placeholder. */
function badgeHost(cell: Cell): HTMLElement | null {
  return cell.node.querySelector<HTMLElement>(':scope > .jp-CellHeader');
}

function updateCell(cell: Cell): void {
  const facts = factsOf(cell.model);
  const info = facts.tags.includes(GENERATED_TAG) ? readInfo(facts.info) : null;
  let badge = cell.node.querySelector<HTMLElement>(`.${BADGE_CLASS}`);
  if (!info) {
    cell.removeClass(GENERATED_CLASS);
    cell.removeClass(EDITED_CLASS);
    badge?.remove();
    return;
  }
  const edited = isEdited(facts.source, info);
  cell.addClass(GENERATED_CLASS);
  cell.toggleClass(EDITED_CLASS, edited);
  const host = badgeHost(cell);
  if (!host) {
    // Windowed notebooks build a cell's DOM when it is first rendered.
    void cell.ready.then(() => updateCell(cell));
    return;
  }
  if (!badge) {
    badge = document.createElement('div');
    badge.className = BADGE_CLASS;
  }
  if (badge.parentElement !== host) {
    host.insertBefore(badge, host.firstChild);
  }
  const ranInKernel = cell.hasClass(KERNEL_RUN_CLASS);
  const text = badgeText(info, edited, ranInKernel);
  if (badge.textContent !== text) {
    badge.textContent = text;
  }
  badge.title = badgeTooltip(info, edited);
  badge.dataset.validation = info.validation;
  badge.dataset.edited = String(edited);
  badge.dataset.kernelRun = String(ranInKernel);
}

/** Say on the cell's badge that it ran in the kernel, not in the sandbox. */
export function markKernelRun(cell: Cell): void {
  cell.addClass(KERNEL_RUN_CLASS);
  updateCell(cell);
}

/** Keep the badges of one notebook panel up to date. */
export function trackBadges(panel: NotebookPanel): void {
  const watched = new WeakSet<ICellModel>();
  let timer: number | undefined;

  const refresh = (): void => {
    timer = undefined;
    if (panel.isDisposed) {
      return;
    }
    for (const cell of panel.content.widgets) {
      watch(cell.model);
      updateCell(cell);
    }
  };
  const schedule = (): void => {
    if (timer === undefined) {
      timer = window.setTimeout(refresh, 30);
    }
  };
  const watch = (model: ICellModel): void => {
    if (!watched.has(model)) {
      watched.add(model);
      model.contentChanged.connect(schedule);
      model.metadataChanged.connect(schedule);
    }
  };

  const connectModel = (): void => {
    panel.content.model?.cells.changed.connect(schedule);
    schedule();
  };
  panel.content.modelChanged.connect(connectModel);
  connectModel();
  void panel.context.ready.then(schedule);
}

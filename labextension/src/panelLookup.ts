/**
 * Find the notebook panel a kernel message is about.
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';

function hasCell(panel: NotebookPanel, cellId: string): boolean {
  const model = panel.content.model;
  return !!model && Array.from(model.cells).some(cell => cell.id === cellId);
}

/** Panels whose kernel is `kernelId`, the current one first. */
export function panelsOnKernel(
  tracker: INotebookTracker,
  kernelId: string
): NotebookPanel[] {
  const panels: NotebookPanel[] = [];
  tracker.forEach(panel => {
    if (panel.sessionContext.session?.kernel?.id === kernelId) {
      panels.push(panel);
    }
  });
  const current = tracker.currentWidget;
  return panels.sort((a, b) => Number(b === current) - Number(a === current));
}

/**
 * The panel that owns `sourceCell` among those using the kernel `kernelId`,
 * or for a null cell id the current (else first) of them.
 */
export function findOwner(
  tracker: INotebookTracker,
  kernelId: string,
  sourceCell: string | null
): NotebookPanel | null {
  const panels = panelsOnKernel(tracker, kernelId);
  if (sourceCell === null) {
    return panels[0] ?? null;
  }
  return panels.find(panel => hasCell(panel, sourceCell)) ?? null;
}

/** Whether `panel` talks to the kernel through the connection `kernel`. */
export function usesConnection(
  panel: NotebookPanel,
  kernel: Kernel.IKernelConnection
): boolean {
  return panel.sessionContext.session?.kernel === kernel;
}

/**
 * The notebook toolbar button for the generate command. It passes its panel's
 * id, so the command can show, explain or hide the button by that panel's
 * kernel (see index.ts).
 */
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { CommandToolbarButton } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';

export class GenerateButtonExtension implements DocumentRegistry.IWidgetExtension<
  NotebookPanel,
  INotebookModel
> {
  constructor(
    private readonly commands: CommandRegistry,
    private readonly commandId: string
  ) {}

  createNew(panel: NotebookPanel): IDisposable {
    const button = new CommandToolbarButton({
      commands: this.commands,
      id: this.commandId,
      args: { panel: panel.id },
      label: 'Generate'
    });
    button.addClass('llmscript-toolbar-button');
    panel.toolbar.insertAfter('cellType', 'llmscript-generate', button);
    return new DisposableDelegate(() => button.dispose());
  }
}

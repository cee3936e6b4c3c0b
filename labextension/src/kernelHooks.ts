/**
 * Per kernel connection: take over llmscript execute-reply payloads and
 * answer the "llmscript" comm.
 */
import { ICodeCellModel } from '@jupyterlab/cells';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { applyGeneration, ApplyResult } from './applyGeneration';
import { cellSource, insertCopy } from './cellRequests';
import { findOwner, panelsOnKernel, usesConnection } from './panelLookup';
import {
  COMM_TARGET,
  CommReply,
  findLlmscriptPayload,
  parseGeneration
} from './protocol';
import { staleFailureIndexes } from './staleOutputs';
import { VERSION } from './version';

const hooked = new WeakSet<Kernel.IKernelConnection>();

function toReply(result: ApplyResult): CommReply {
  return result.ok
    ? { ok: true, cell_id: result.cellId, replaced: result.replaced }
    : result.cellId === undefined
      ? { ok: false, reason: result.reason }
      : { ok: false, reason: result.reason, cell_id: result.cellId };
}

/** Remembers which cell each execute request came from. */
class CellIdsByRequest {
  private ids = new Map<string, string>();

  remember(msg: KernelMessage.IMessage): void {
    const cellId = (msg.metadata as { cellId?: unknown }).cellId;
    if (
      msg.header.msg_type === 'execute_request' &&
      typeof cellId === 'string'
    ) {
      this.ids.set(msg.header.msg_id, cellId);
      if (this.ids.size > 500) {
        this.ids.delete(this.ids.keys().next().value as string);
      }
    }
  }

  take(parentMsgId: string | undefined): string | null {
    if (parentMsgId === undefined) {
      return null;
    }
    const id = this.ids.get(parentMsgId) ?? null;
    this.ids.delete(parentMsgId);
    return id;
  }
}

function onAnyMessage(
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection,
  cellIds: CellIdsByRequest,
  args: Kernel.IAnyMessageArgs
): void {
  const msg = args.msg;
  if (args.direction === 'send') {
    cellIds.remember(msg);
    return;
  }
  if (msg.header.msg_type !== 'execute_reply') {
    return;
  }
  const parent = (msg.parent_header as { msg_id?: string }).msg_id;
  const requestCell = cellIds.take(parent);
  const content = msg.content as { payload?: unknown[] };
  const found = findLlmscriptPayload(content.payload);
  if (!found || !content.payload) {
    return;
  }
  const generation = found.generation;
  if (generation.info.source_cell === null && requestCell !== null) {
    generation.info.source_cell = requestCell;
  }
  const panel = findOwner(tracker, kernel.id, generation.info.source_cell);
  if (!panel) {
    return; // Not ours to place: JupyterLab inserts the code as usual.
  }
  // anyMessage is emitted before JupyterLab handles the reply, on the same
  // object, so removing the payload here stops the default insertion.
  content.payload.splice(found.index, 1);
  void applyGeneration(panel, generation).then(result => {
    if (!result.ok) {
      console.warn(`llmscript: generation not placed: ${result.reason}`);
    }
  });
}

async function answerComm(
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection,
  data: unknown
): Promise<CommReply | null> {
  const request = (data ?? {}) as {
    action?: unknown;
    text?: unknown;
    llmscript?: unknown;
  };
  if (request.action === 'hello') {
    return { ok: true, version: VERSION };
  }
  const action = request.action;
  if (action !== 'insert' && action !== 'source' && action !== 'insert-copy') {
    return { ok: false, reason: `unknown action ${String(action)}` };
  }
  const text = action === 'source' ? '' : request.text;
  const generation = parseGeneration(text, request.llmscript);
  if (!generation) {
    return { ok: false, reason: `malformed ${action} request` };
  }
  const owner = findOwner(tracker, kernel.id, generation.info.source_cell);
  // Comm messages reach every connection to the kernel: only the connection
  // of the owning panel answers; if no panel owns the cell, the first does.
  if (owner && !usesConnection(owner, kernel)) {
    return null;
  }
  if (!owner) {
    const first = panelsOnKernel(tracker, kernel.id)[0];
    if (first && !usesConnection(first, kernel)) {
      return null;
    }
    return { ok: false, reason: 'source cell not found in any open notebook' };
  }
  if (action === 'source') {
    return cellSource(owner, generation.info.source_cell) as CommReply;
  }
  if (action === 'insert-copy') {
    return insertCopy(
      owner,
      generation.info.source_cell,
      generation.text
    ) as CommReply;
  }
  const result = await applyGeneration(owner, generation);
  if (result.ok) {
    dropStaleFailures(owner, generation.info.source_cell);
  }
  return toReply(result);
}

/**
 * The widget's Regenerate succeeded: the source cell's earlier UsageError or
 * traceback no longer describes it (see staleOutputs.ts).
 */
function dropStaleFailures(panel: NotebookPanel, cellId: string | null): void {
  const cell = Array.from(panel.content.model?.cells ?? []).find(
    c => c.id === cellId
  );
  if (!cell || cell.type !== 'code') {
    return;
  }
  // Through the shared model: it is what is saved, and the output area follows it
  // (OutputAreaModel.remove would change only the view's copy).
  const shared = (cell as ICodeCellModel).sharedModel;
  for (const index of staleFailureIndexes(shared.getOutputs())) {
    shared.updateOutputs(index, index + 1, []);
  }
}

function hookKernel(
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection
): void {
  if (hooked.has(kernel)) {
    return;
  }
  hooked.add(kernel);
  const cellIds = new CellIdsByRequest();
  kernel.anyMessage.connect((_, args) =>
    onAnyMessage(tracker, kernel, cellIds, args)
  );
  kernel.registerCommTarget(COMM_TARGET, (comm, openMsg) => {
    const handle = (data: unknown): void => {
      // Not awaited: the kernel connection waits for this callback before it
      // handles further messages, and the overwrite dialog can take a while.
      void answerComm(tracker, kernel, data).then(reply => {
        if (reply && !comm.isDisposed) {
          comm.send(
            reply as unknown as KernelMessage.ICommMsgMsg['content']['data']
          );
        }
      });
    };
    comm.onMsg = msg => handle(msg.content.data);
    handle(openMsg.content.data);
  });
}

/** Hook every kernel this panel uses, now and after kernel changes. */
export function watchPanelKernels(
  tracker: INotebookTracker,
  panel: NotebookPanel
): void {
  const context = panel.sessionContext;
  const current = context.session?.kernel;
  if (current) {
    hookKernel(tracker, current);
  }
  context.kernelChanged.connect((_, change) => {
    if (change.newValue) {
      hookKernel(tracker, change.newValue);
    }
  });
}

/**
 * Per kernel connection: whether the %%generate magic is loaded, kept fresh.
 *
 * Asked once when the connection is first seen, again after every execute
 * reply that is not our own check (a `%load_ext` may have run, or a cell may
 * have raised), and after a restart. At most one check is in flight; replies
 * that arrive meanwhile ask for one more check when it is done, so "Run all"
 * costs a few checks, not one per cell. A check that ipykernel aborts (it
 * aborts every queued request after a cell raises) is asked again shortly.
 */
import { Kernel, KernelMessage } from '@jupyterlab/services';
import {
  CHECK_EXPRESSIONS,
  IMagicState,
  readCheck,
  sameState,
  UNKNOWN_STATE
} from './magicCheck';

const RESET_STATUSES = new Set(['restarting', 'autorestarting', 'dead']);

export class MagicPresence {
  private _state: IMagicState = UNKNOWN_STATE;
  private readonly listeners = new Set<(state: IMagicState) => void>();
  private readonly checkIds = new Set<string>();
  private inFlight = false;
  private again = false;

  constructor(private readonly kernel: Kernel.IKernelConnection) {
    kernel.anyMessage.connect(this.onMessage, this);
    kernel.statusChanged.connect(this.onStatus, this);
    void this.check();
  }

  get state(): IMagicState {
    return this._state;
  }

  /** Call `listener` whenever what the extension should show changes. */
  onChange(listener: (state: IMagicState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Ask the kernel now (or once more after the check in flight). */
  async check(): Promise<void> {
    if (this.kernel.isDisposed) {
      return;
    }
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = true;
    this.again = false;
    let next: IMagicState | null = null;
    let aborted = false;
    try {
      const future = this.kernel.requestExecute({
        code: '',
        silent: true,
        store_history: false,
        user_expressions: CHECK_EXPRESSIONS,
        allow_stdin: false,
        stop_on_error: false
      });
      this.checkIds.add(future.msg.header.msg_id);
      const reply = await future.done;
      this.checkIds.delete(future.msg.header.msg_id);
      next = readCheck(reply.content);
      aborted = next === null;
    } catch {
      next = null; // the kernel restarted or went away mid-check
    } finally {
      this.inFlight = false;
    }
    if (aborted) {
      // Aborted with the queue after an error: ask again once it has drained.
      window.setTimeout(() => void this.check(), 300);
      return;
    }
    if (next) {
      this.set(next);
    }
    if (this.again || next === null) {
      this.again = false;
      if (next === null) {
        this.set(UNKNOWN_STATE); // asked again when the kernel is idle
      } else {
        void this.check();
      }
    }
  }

  private set(state: IMagicState): void {
    if (!sameState(state, this._state)) {
      this._state = state;
      this.listeners.forEach(listener => listener(state));
    }
  }

  private onMessage(
    _: Kernel.IKernelConnection,
    args: Kernel.IAnyMessageArgs
  ): void {
    const msg = args.msg;
    if (args.direction !== 'recv' || msg.header.msg_type !== 'execute_reply') {
      return;
    }
    const parent = (msg.parent_header as Partial<KernelMessage.IHeader>).msg_id;
    if (parent !== undefined && this.checkIds.has(parent)) {
      return;
    }
    void this.check();
  }

  private onStatus(_: Kernel.IKernelConnection, status: string): void {
    if (RESET_STATUSES.has(status)) {
      this.set(UNKNOWN_STATE);
    } else if (status === 'idle' && this._state.status === 'unknown') {
      void this.check();
    }
  }
}

const presences = new WeakMap<Kernel.IKernelConnection, MagicPresence>();

/** The (one) presence watcher of a kernel connection. */
export function presenceOf(kernel: Kernel.IKernelConnection): MagicPresence {
  let presence = presences.get(kernel);
  if (!presence) {
    presence = new MagicPresence(kernel);
    presences.set(kernel, presence);
  }
  return presence;
}

/** What a panel's kernel has now (unknown without a kernel). */
export function stateOfKernel(
  kernel: Kernel.IKernelConnection | null | undefined
): IMagicState {
  return kernel ? presenceOf(kernel).state : UNKNOWN_STATE;
}

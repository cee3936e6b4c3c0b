/**
 * Generated code never runs in the kernel unseen (pure, no DOM).
 *
 * The sandbox is where %%generate runs code; a generated cell run with ▶ or Run
 * All runs in the kernel, with the user's files, network and credentials. So a
 * generated cell whose checks flagged something, that never ran in the sandbox,
 * or that was edited since, is run in the kernel only after the user confirms.
 * Run All asks once for all such cells of the batch, in order.
 */
import { IGenerationInfo } from './protocol';

/** Why a generated cell should not run in the kernel without asking (empty: fine). */
export function kernelRunRisks(
  info: IGenerationInfo,
  edited: boolean
): string[] {
  const risks: string[] = [];
  if (info.validation === 'fail') {
    risks.push('its checks failed');
  } else if (info.validation === 'warn') {
    risks.push('its checks gave warnings');
  }
  if (!info.run) {
    risks.push('it never ran in the sandbox (static checks only)');
  } else if (info.run.status !== 'ok' || (info.run.exit_code ?? 0) !== 0) {
    risks.push(`its sandbox run did not succeed (${info.run.status})`);
  }
  if (edited) {
    risks.push('it was edited since it was generated');
  }
  return risks;
}

/** One cell to confirm: its position (1-based) and its risks. */
export interface IRiskyCell {
  number: number;
  risks: string[];
}

/** The confirmation's text: every risky cell of the batch, named by its position. */
export function confirmationText(cells: readonly IRiskyCell[]): string {
  const lines = cells.map(c => `Cell ${c.number}: ${c.risks.join('; ')}.`);
  const which =
    cells.length === 1 ? 'This generated cell' : 'These generated cells';
  return [
    `${which} will run in the kernel, NOT in the sandbox: with your files, network and credentials.`,
    ...lines
  ].join('\n');
}

/**
 * Which cells of a batch run once the user answered: all of them when confirmed,
 * else only those before the first risky one (as Run All stops at an error).
 */
export function approvedRuns(
  risky: readonly boolean[],
  confirmed: boolean
): boolean[] {
  if (confirmed) {
    return risky.map(() => true);
  }
  const first = risky.indexOf(true);
  return risky.map((_, index) => first === -1 || index < first);
}

/**
 * Collects the run requests made in one tick (Run All asks for every cell
 * synchronously), lets `approve` decide on the batch, then starts the approved
 * runs in their original order. Batches are decided one after the other, so a
 * cell run while a confirmation is open waits behind it.
 */
export class RunGate<T> {
  private pending: { item: T; resolve: (ran: Promise<boolean>) => void }[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly approve: (items: T[]) => Promise<boolean[]>,
    private readonly run: (item: T) => Promise<boolean>
  ) {}

  submit(item: T): Promise<boolean> {
    return new Promise<Promise<boolean>>(resolve => {
      if (this.pending.length === 0) {
        queueMicrotask(() => this.flush());
      }
      this.pending.push({ item, resolve });
    }).then(ran => ran);
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    this.chain = this.chain.then(async () => {
      let approved: boolean[];
      try {
        approved = await this.approve(batch.map(b => b.item));
      } catch {
        approved = batch.map(() => false);
      }
      batch.forEach((b, index) =>
        b.resolve(approved[index] ? this.run(b.item) : Promise.resolve(false))
      );
    });
  }
}

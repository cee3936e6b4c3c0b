/**
 * The text of a generated cell's badge (pure).
 */
import { IGenerationInfo } from './protocol';

const VALIDATION_TEXT = {
  pass: '✓ checks passed',
  warn: '! check warnings',
  fail: '✗ checks failed'
} as const;

/** What was checked: a sandbox run, or only the static checks (no --run). */
export function checkedText(info: IGenerationInfo): string {
  if (!info.run) {
    return 'static checks only';
  }
  const ok = info.run.status === 'ok' && (info.run.exit_code ?? 0) === 0;
  return ok ? 'ran in sandbox' : `sandbox run: ${info.run.status}`;
}

/**
 * E.g. "generated · anthropic:claude-sonnet-5-5 · ✓ checks passed · static checks
 * only · edited · ran in the kernel, not sandboxed".
 */
export function badgeText(
  info: IGenerationInfo,
  edited: boolean,
  ranInKernel = false
): string {
  const parts = [
    'generated',
    info.model,
    VALIDATION_TEXT[info.validation],
    checkedText(info)
  ];
  if (edited) {
    parts.push('edited');
  }
  if (ranInKernel) {
    parts.push('ran in the kernel, not sandboxed');
  }
  return parts.join(' · ');
}

/** The badge's tooltip: the details that do not fit in the badge. */
export function badgeTooltip(info: IGenerationInfo, edited: boolean): string {
  const lines: string[] = [];
  if (typeof info.checks === 'string' && info.checks) {
    lines.push(`Checks: ${info.checks}`);
  }
  if (info.run) {
    const duration =
      typeof info.run.duration === 'number'
        ? ` in ${info.run.duration.toFixed(2)} s`
        : '';
    lines.push(`Sandbox run: ${info.run.status}${duration}`);
  }
  if (typeof info.created === 'string' && info.created) {
    lines.push(`Created: ${info.created}`);
  }
  lines.push(`Generation: ${info.generation_id}`);
  if (edited) {
    lines.push('Edited by hand since it was generated.');
  }
  lines.push(
    'Running this cell runs it in the kernel, outside the sandbox; llmscript asks first when its checks flagged it, it never ran in the sandbox, or it was edited.'
  );
  return lines.join('\n');
}

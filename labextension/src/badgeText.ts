/**
 * The text of a generated cell's badge (pure).
 */
import { IGenerationInfo } from './protocol';

const VALIDATION_TEXT = {
  pass: '✓ checks passed',
  warn: '! check warnings',
  fail: '✗ checks failed'
} as const;

/** E.g. "generated · anthropic:claude-sonnet-5-5 · ✓ checks passed · edited". */
export function badgeText(info: IGenerationInfo, edited: boolean): string {
  const parts = ['generated', info.model, VALIDATION_TEXT[info.validation]];
  if (edited) {
    parts.push('edited');
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
  return lines.join('\n');
}

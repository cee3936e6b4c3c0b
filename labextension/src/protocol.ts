/**
 * The kernel <-> front-end protocol of the %%generate magic (pure, no DOM).
 *
 * Route 1: an execute reply payload {source: 'set_next_input', text, replace,
 * llmscript: IGenerationInfo & {record}}.
 * Route 2: a comm to target COMM_TARGET with data {action: 'insert', text,
 * llmscript} or {action: 'hello'}.
 *
 * The string constants below are kept equal to llmscript_magic/_protocol.py by
 * tests/test_protocol.py: change both sides together.
 */

/** Comm target the extension registers on every notebook kernel. */
export const COMM_TARGET = 'llmscript';
/** Key of the kernel's extra dict in the set_next_input payload and the comm data. */
export const PAYLOAD_KEY = 'llmscript';
/** Tag carried by every generated cell. */
export const GENERATED_TAG = 'llmscript-generated';
/** Cell metadata key of a generated cell's generation info. */
export const INFO_KEY = 'llmscript';
/** Source (%%generate) cell metadata key of the full generation record. */
export const RECORD_KEY = 'llmscript_record';
/** Metadata key of a %%generate cell made by the command from another cell. */
export const FROM_KEY = 'llmscript_from';

export type Validation = 'pass' | 'warn' | 'fail';

export interface IRunInfo {
  status: string;
  exit_code?: number | null;
  duration?: number | null;
}

/** What a generated cell keeps under metadata.llmscript. */
export interface IGenerationInfo {
  source_cell: string | null;
  generation_id: string;
  spec_hash?: string;
  code_hash: string;
  model: string;
  created?: string;
  validation: Validation;
  checks?: string;
  run?: IRunInfo | null;
  [key: string]: unknown;
}

/** One generation as received from the kernel. */
export interface IGeneration {
  text: string;
  info: IGenerationInfo;
  record: Record<string, unknown> | null;
}

/** Reply sent back on the comm. */
export type CommReply =
  | { ok: true; cell_id: string; replaced: boolean }
  | { ok: true; version: string }
  | { ok: false; reason: string; cell_id?: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Read the `llmscript` dict (and the text) into an IGeneration, or null if
 * it is not one. The `record` key is split off; everything else is kept.
 */
export function parseGeneration(
  text: unknown,
  llmscript: unknown
): IGeneration | null {
  if (typeof text !== 'string' || !isObject(llmscript)) {
    return null;
  }
  const { record, ...rest } = llmscript;
  const sourceCell = rest.source_cell;
  if (
    typeof rest.generation_id !== 'string' ||
    typeof rest.code_hash !== 'string' ||
    !(
      sourceCell === null ||
      sourceCell === undefined ||
      typeof sourceCell === 'string'
    )
  ) {
    return null;
  }
  const validation: Validation =
    rest.validation === 'pass' || rest.validation === 'fail'
      ? rest.validation
      : 'warn';
  const info: IGenerationInfo = {
    ...rest,
    source_cell: typeof sourceCell === 'string' ? sourceCell : null,
    generation_id: rest.generation_id,
    code_hash: rest.code_hash,
    model: typeof rest.model === 'string' ? rest.model : 'unknown model',
    validation
  };
  return { text, info, record: isObject(record) ? record : null };
}

/** Read the generation info kept in a cell's metadata, if well formed. */
export function readInfo(value: unknown): IGenerationInfo | null {
  if (!isObject(value)) {
    return null;
  }
  const parsed = parseGeneration('', value);
  return parsed ? parsed.info : null;
}

/**
 * Pick the llmscript payload out of an execute reply's payload list.
 * Returns its index and parsed generation, or null.
 */
export function findLlmscriptPayload(
  payload: unknown
): { index: number; generation: IGeneration } | null {
  if (!Array.isArray(payload)) {
    return null;
  }
  for (let index = 0; index < payload.length; index++) {
    const item: unknown = payload[index];
    if (
      isObject(item) &&
      item.source === 'set_next_input' &&
      PAYLOAD_KEY in item
    ) {
      const generation = parseGeneration(item.text, item[PAYLOAD_KEY]);
      if (generation) {
        return { index, generation };
      }
    }
  }
  return null;
}

import type { RollbackResult } from "./types";

/** The result as one JSON document: the raw preview and up (engine text, decrypted outputs) are summarised. */
export function resultJson(r: RollbackResult): Record<string, unknown> {
  const { exitCode, outcome, message, preview, up, ...rest } = r;
  return {
    exitCode,
    outcome,
    message,
    ...rest,
    preview: preview ? { changeSummary: preview.changeSummary ?? {} } : undefined,
    up: up ? { result: up.summary?.result, resourceChanges: up.summary?.resourceChanges ?? {} } : undefined,
  };
}

/**
 * Refusals: the expected ways the program and its commands stop, each with its message alone (no stack trace) and
 * an exit code. Recognised with `instanceof GuardianRefusal`, never by comparing names. Anything else that is thrown
 * is a failure (exit 1) and keeps its stack trace.
 *
 *   exit 2   refused, nothing written: bad config or arguments, NO-GO, a stack or database that cannot be used
 */
export abstract class GuardianRefusal extends Error {
  /** The process exit code a command ends with for this refusal. */
  readonly exitCode: number = 2;

  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The exit code for anything thrown: a refusal's own, else 1. */
export function exitCodeOf(e: unknown): number {
  return e instanceof GuardianRefusal ? e.exitCode : 1;
}

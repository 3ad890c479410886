/**
 * Refusals: the expected ways the program and its commands stop, each with its message alone (no stack trace) and
 * an exit code. Recognised with `instanceof GuardianRefusal`, never by comparing names. Anything else that is thrown
 * is a failure (exit 1) and keeps its stack trace.
 *
 *   exit 2   refused, nothing written: bad config or arguments, NO-GO, a stack or database that cannot be used
 */
export abstract class GuardianRefusal extends Error {
  /** The process exit code a command ends with for this refusal. */
  readonly exitCode: number;

  /**
   * Every field is assigned in this body, from the subclass's arguments: a dynamic provider's code is serialized by
   * Pulumi, which keeps constructor bodies but drops class field initializers, and whose `Error.call(this, message)`
   * sets no message on `this` (test/unit/errors.test.ts). Neither `new.target` nor `constructor.name` is the class's
   * own name there.
   */
  constructor(message: string, name: string, exitCode = 2) {
    super(message);
    this.message = message;
    this.name = name;
    this.exitCode = exitCode;
  }
}

/** The exit code for anything thrown: a refusal's own, else 1. */
/**
 * The error with a stack of its message alone, no frames: for a refusal the program hands to Pulumi, which shows only
 * its message but also formats it with util.inspect and colours. On Node 20 a frame that source maps place at
 * node_modules/@pulumi/<file>.ts (Stack.initializeAndRegisterOutputs is one) makes that formatting loop until the string
 * is too long: about 25 s here before a NO-GO or a bad config was shown (index.ts, cleanly).
 */
export function withoutFrames<E extends Error>(e: E): E {
  e.stack = `${e.name}: ${e.message}`;
  return e;
}

export function exitCodeOf(e: unknown): number {
  return e instanceof GuardianRefusal ? e.exitCode : 1;
}

/** An error's SQLSTATE (or Node's error code), if any: what a `catch (e)` reads instead of typing `e` as any. */
export function errorCode(e: unknown): string | undefined {
  const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

/** An error's message, or the thrown value as text. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

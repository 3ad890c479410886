/**
 * Pausing a fleet's loops between steps (harness/consumerFleet.ts, harness/applicationFleet.ts): pause() stops new
 * steps and waits for the ones in flight, so the database is quiescent for the fleet's organizations; resume() lets
 * the loops go on.
 */
export class PauseGate {
  private paused: Promise<void> | undefined;
  private release: (() => void) | undefined;
  private inFlight = 0;
  private idle: (() => void) | undefined;

  /** False when open; else waits for resume() and returns true (the loop should look at its stop flag again). */
  async waited(): Promise<boolean> {
    if (!this.paused) return false;
    await this.paused;
    return true;
  }

  /** Runs one step of a loop, counted as in flight while it runs. */
  async step<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await fn();
    } finally {
      this.inFlight--;
      if (this.inFlight === 0 && this.idle) {
        const r = this.idle;
        this.idle = undefined;
        r();
      }
    }
  }

  async pause(): Promise<void> {
    this.paused = new Promise((r) => (this.release = r));
    if (this.inFlight > 0) await new Promise<void>((r) => (this.idle = r));
  }

  resume(): void {
    const r = this.release;
    this.paused = undefined;
    this.release = undefined;
    r?.();
  }
}

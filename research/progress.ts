/**
 * Progress of a long study on stderr: a redrawn bar when stderr is a terminal, otherwise one line
 * per finished stage (so logs and CI output stay readable).
 */

export interface ProgressSink {
  write(s: string): void;
  /** A terminal: redraw a bar in place. */
  readonly tty: boolean;
}

/** Where a study reports how far it has got. */
export class Progress {
  private stageName = "";
  private total = 0;
  private done = 0;
  private detail = "";
  private started = 0;
  private lastDraw = 0;
  private drawn = false;

  /** `prefix` starts every report (the study's name). */
  constructor(
    private readonly sink: ProgressSink | undefined,
    private readonly prefix: string,
    private readonly width = 28,
  ) {}

  /** A progress that reports nothing (library use, tests). */
  static silent(): Progress {
    return new Progress(undefined, "");
  }

  /** Begin a stage of `total` units of work (finishing the previous one). */
  stage(name: string, total: number): void {
    if (this.stageName !== "") this.end();
    this.stageName = name;
    this.total = Math.max(0, total);
    this.done = 0;
    this.detail = "";
    this.started = performance.now();
    this.draw(true);
  }

  /** One unit of the current stage done; `detail` says what it was. */
  tick(detail = ""): void {
    this.done = Math.min(this.total, this.done + 1);
    this.detail = detail;
    this.draw(false);
  }

  /** Finish the current stage. */
  end(): void {
    if (this.stageName === "" || this.sink === undefined) {
      this.stageName = "";
      return;
    }
    const secs = ((performance.now() - this.started) / 1000).toFixed(1);
    const line = `${this.prefix}: ${this.stageName} — ${this.done}/${this.total} in ${secs} s`;
    this.sink.write(this.sink.tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    this.stageName = "";
    this.drawn = false;
  }

  private draw(force: boolean): void {
    if (this.sink === undefined || !this.sink.tty) return;
    const now = performance.now();
    // at most ten redraws a second
    if (!force && this.drawn && now - this.lastDraw < 100 && this.done < this.total) return;
    this.lastDraw = now;
    this.drawn = true;
    const frac = this.total === 0 ? 1 : this.done / this.total;
    const full = Math.round(frac * this.width);
    const elapsed = (now - this.started) / 1000;
    const eta =
      this.done > 0 && this.done < this.total
        ? ` ~${Math.ceil((elapsed / this.done) * (this.total - this.done))} s left`
        : "";
    const bar = `${"█".repeat(full)}${"░".repeat(this.width - full)}`;
    this.sink.write(
      `\r\x1b[2K${this.prefix}: ${this.stageName} ${bar} ` +
        `${this.done}/${this.total}${eta}${this.detail !== "" ? `  ${this.detail}` : ""}`,
    );
  }
}

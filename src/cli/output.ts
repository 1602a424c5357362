// Where the tool writes: the process's stdout and stderr, drained before it exits.

export interface Output {
  stdout(text: string): void;
  stderr(text: string): void;
  readonly stderrIsTTY: boolean;
  /** Raw bytes of a running program's output, written as they arrive. */
  readonly raw: { stdout(bytes: Uint8Array): void; stderr(bytes: Uint8Array): void };
}

export const processOutput: Output = {
  stdout: (text) => {
    if (text) process.stdout.write(text);
  },
  stderr: (text) => {
    if (text) process.stderr.write(text);
  },
  get stderrIsTTY() {
    return process.stderr.isTTY === true;
  },
  raw: {
    stdout: (bytes) => {
      process.stdout.write(bytes);
    },
    stderr: (bytes) => {
      process.stderr.write(bytes);
    },
  },
};

/** Resolves once everything written so far has been handed to the OS. */
export async function flushOutput(): Promise<void> {
  await Promise.all(
    [process.stdout, process.stderr].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.destroyed || !s.writable) return resolve();
          s.write('', () => resolve());
        }),
    ),
  );
}

// The live line on a terminal: case, phase, elapsed, and (in the timed churn phase) the time left. Written to stderr,
// rewritten in place; nothing when stderr is not a terminal (a log keeps only the results).
export interface Progress {
  startCase(index: number, total: number, label: string): void;
  phase(name: string, seconds?: number): void;
  done(): void;
}

export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return { startCase() {}, phase() {}, done() {} };
  const started = Date.now();
  let label = '';
  let phase = '';
  let phaseEnd: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const draw = () => {
    const elapsed = ((Date.now() - started) / 1000).toFixed(0);
    const left = phaseEnd ? `, ${Math.max(0, (phaseEnd - Date.now()) / 1000).toFixed(0)} s left` : '';
    stream.write(`\r\x1b[K${label}: ${phase} (${elapsed} s${left})`);
  };
  return {
    startCase(index, total, l) {
      label = `[${index + 1}/${total}] ${l}`;
      timer ??= setInterval(draw, 500).unref();
    },
    phase(name, seconds) {
      phase = name;
      phaseEnd = seconds ? Date.now() + seconds * 1000 : undefined;
      draw();
    },
    done() {
      if (timer) clearInterval(timer);
      stream.write('\r\x1b[K');
    },
  };
}

// Terminal output: colour only on a TTY without NO_COLOR; JSON lines for machines.
export const useColor = (stream: NodeJS.WriteStream = process.stdout) =>
  Boolean(stream.isTTY) && !('NO_COLOR' in process.env && process.env.NO_COLOR !== undefined) && process.env.TERM !== 'dumb';

const codes = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, gray: 90, bold: 1 } as const;
export type Color = keyof typeof codes;

export function paint(text: string, color: Color, on = useColor()): string {
  return on ? `\x1b[${codes[color]}m${text}\x1b[0m` : text;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

export function println(line = ''): void {
  process.stdout.write(`${line}\n`);
}

export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, visible(c).length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i] - visible(c).length))).join('  ')).join('\n');
}

function visible(s: string): string {
  return s.replace(/\x1b\[[0-9;]*m/g, '');
}


/** Split `text` into lines of at most `width` characters at spaces (a longer word stays whole). */
export function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line || !out.length) out.push(line);
  return out;
}

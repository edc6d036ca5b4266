// A small, strict flag parser: every flag is declared with its help text, so `--help` documents exactly what is
// accepted and an unknown or malformed flag is a usage error (exit 2), never silently ignored.
export interface FlagSpec {
  name: string;
  type: 'string' | 'boolean' | 'list';
  help: string;
  value?: string; // placeholder in help, e.g. "DIR"
  default?: string;
  choices?: string[];
}

export class UsageError extends Error {}

export type ParsedFlags = Record<string, string | boolean | string[] | undefined>;

export function parseFlags(argv: string[], specs: FlagSpec[]): { flags: ParsedFlags; positionals: string[] } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const flags: ParsedFlags = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) throw new UsageError(`unknown flag --${name}`);
    if (spec.type === 'boolean') {
      if (eq >= 0) {
        const v = arg.slice(eq + 1);
        if (v !== 'true' && v !== 'false') throw new UsageError(`--${name} takes true or false, not "${v}"`);
        flags[name] = v === 'true';
      } else flags[name] = true;
      continue;
    }
    let value: string | undefined = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    if (spec.choices && !spec.choices.includes(value)) throw new UsageError(`--${name} must be one of ${spec.choices.join(', ')}, not "${value}"`);
    if (spec.type === 'list') {
      // Repeatable and comma-separated, as kube-proxy's list flags are.
      const list = (flags[name] as string[] | undefined) ?? [];
      list.push(...value.split(',').map((s) => s.trim()).filter(Boolean));
      flags[name] = list;
    } else flags[name] = value;
    value = undefined;
  }
  for (const s of specs) if (flags[s.name] === undefined && s.default !== undefined) flags[s.name] = s.type === 'list' ? [s.default] : s.default;
  return { flags, positionals };
}

export function formatFlags(specs: FlagSpec[]): string {
  const lines = specs.map((s) => {
    const head = `  --${s.name}${s.type === 'boolean' ? '' : ` ${s.value ?? 'VALUE'}`}`;
    const def = s.default !== undefined ? ` (default ${s.default})` : '';
    return `${head.padEnd(34)} ${s.help}${def}`;
  });
  return lines.join('\n');
}

export function str(flags: ParsedFlags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function list(flags: ParsedFlags, name: string): string[] {
  const v = flags[name];
  return Array.isArray(v) ? v : [];
}

export function bool(flags: ParsedFlags, name: string): boolean {
  return flags[name] === true;
}

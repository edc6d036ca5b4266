// Flags: node:util parseArgs (strict) does the parsing; this file declares every flag with its help text, so
// `--help` documents exactly what is accepted and an unknown or malformed flag is a usage error (exit 2) naming the
// flag, never silently ignored. Before parseArgs, the spellings kube-proxy's parser (Go's pflag) accepts and
// parseArgs does not are rewritten, so a kube-proxy command line carries over unchanged:
//   --flag_name (pflag treats _ and - alike), -v=2 (shorthand with =), --bool=false / =0 / =t (strconv.ParseBool).
import { parseArgs } from 'node:util';
import { parseCIDR } from '../model/ip';

export interface FlagSpec {
  name: string;
  /** list: repeatable and comma-separated; map: k=v,k2=v2 with boolean values (--feature-gates). */
  type: 'string' | 'boolean' | 'list' | 'map';
  help: string;
  value?: string; // placeholder in help, e.g. "DIR"
  default?: string;
  choices?: string[];
  /** One-letter spelling (-v, -h). */
  short?: string;
  /** Accepted (kube-proxy has it) but has no effect in svcplane: why, said once at start when it is given. */
  noEffect?: string;
}

export class UsageError extends Error {}

export type ParsedFlags = Record<string, string | boolean | string[] | Record<string, boolean> | undefined>;

/** Go's strconv.ParseBool, as pflag reads a boolean flag's value. */
export function parseGoBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

export function parseFlags(argv: string[], specs: FlagSpec[]): { flags: ParsedFlags; positionals: string[] } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const flags: ParsedFlags = {};
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    const long = /^--([^=]+)(?:=([\s\S]*))?$/.exec(a);
    if (long) {
      const name = long[1].replace(/_/g, '-');
      // parseArgs takes no value for a boolean; pflag takes ParseBool's spellings after "=".
      if (byName.get(name)?.type === 'boolean' && long[2] !== undefined) {
        const v = parseGoBool(long[2]);
        if (v === undefined) throw new UsageError(`--${name} takes true or false, not "${long[2]}"`);
        flags[name] = v;
        continue;
      }
      args.push(long[2] === undefined ? `--${name}` : `--${name}=${long[2]}`);
      continue;
    }
    const short = /^-([a-zA-Z])=([\s\S]*)$/.exec(a);
    if (short) args.push(`-${short[1]}`, short[2]);
    else args.push(a);
  }
  const options = Object.fromEntries(specs.map((s) => [s.name, {
    type: s.type === 'boolean' ? 'boolean' as const : 'string' as const,
    multiple: s.type === 'list' || s.type === 'map',
    ...(s.short ? { short: s.short } : {}),
  }]));
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(usageMessage(e as Error & { code?: string }));
  }
  for (const [name, raw] of Object.entries(parsed.values)) {
    const spec = byName.get(name)!;
    if (spec.type === 'boolean') flags[name] = raw as boolean;
    else if (spec.type === 'list') flags[name] = (raw as string[]).flatMap((v) => v.split(',').map((s) => s.trim()).filter(Boolean));
    else if (spec.type === 'map') flags[name] = parseBoolMap(name, raw as string[]);
    else {
      const v = raw as string;
      if (spec.choices && !spec.choices.includes(v)) throw new UsageError(`--${name} must be one of ${spec.choices.join(', ')}, not "${v}"`);
      flags[name] = v;
    }
  }
  for (const s of specs) if (flags[s.name] === undefined && s.default !== undefined) flags[s.name] = s.type === 'list' ? [s.default] : s.default;
  return { flags, positionals: parsed.positionals };
}

/** parseArgs' messages, shortened to what went wrong and the flag's name. */
function usageMessage(e: Error & { code?: string }): string {
  const flag = /'(-{1,2}[^' ]+)/.exec(e.message)?.[1];
  if (!flag) return e.message;
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown flag ${flag}`;
  if (/does not take an argument/.test(e.message)) return `${flag} takes no value`;
  if (/argument missing|ambiguous/.test(e.message)) return `${flag} needs a value (one starting with "-" is written ${flag}=VALUE)`;
  return e.message;
}

/** --feature-gates A=true,B=false (repeatable; later wins), as pflag's mapStringBool. */
function parseBoolMap(name: string, values: string[]): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const pair of values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    const v = eq > 0 ? parseGoBool(pair.slice(eq + 1).trim()) : undefined;
    if (v === undefined) throw new UsageError(`--${name}: "${pair}" is not KEY=true or KEY=false`);
    out[pair.slice(0, eq).trim()] = v;
  }
  return out;
}

export function formatFlags(specs: FlagSpec[]): string {
  const lines = specs.map((s) => {
    const names = s.short ? `-${s.short}, --${s.name}` : `    --${s.name}`;
    const head = `  ${names}${s.type === 'boolean' ? '' : ` ${s.value ?? 'VALUE'}`}`;
    const def = s.default !== undefined ? ` (default ${s.default})` : '';
    const note = s.noEffect ? ` [accepted, no effect: ${s.noEffect}]` : '';
    return `${head.padEnd(38)} ${s.help}${def}${note}`;
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

/** The flags given that have no effect, each with its reason (to be said once at start). */
export function noEffectFlags(flags: ParsedFlags, specs: FlagSpec[]): string[] {
  return specs.filter((s) => s.noEffect && flags[s.name] !== undefined).map((s) => {
    const v = flags[s.name];
    const given = v && typeof v === 'object' && !Array.isArray(v) ? ` (given: ${Object.entries(v).map(([k, x]) => `${k}=${x}`).join(',')})` : '';
    return `--${s.name}: accepted, no effect: ${s.noEffect}${given}`;
  });
}

/** A list flag of CIDRs, each checked (a clear error naming the flag and the value). */
export function cidrList(flags: ParsedFlags, name: string): string[] {
  const v = list(flags, name);
  for (const c of v) if (!parseCIDR(c)) throw new UsageError(`--${name}: "${c}" is not a CIDR`);
  return v;
}

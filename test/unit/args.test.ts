// Flag parsing: kube-proxy's spellings (Go's pflag) carry over; every kube-proxy flag is accepted.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError, noEffectFlags, parseFlags, type FlagSpec } from '../../src/cli/args';
import { KUBE_PROXY_FLAGS } from '../../src/cli/runFlags';
import { REPO } from '../helpers/cli';

const SPECS: FlagSpec[] = [
  { name: 'cluster-cidr', type: 'list', help: '' },
  { name: 'masquerade-all', type: 'boolean', help: '' },
  { name: 'hostname-override', type: 'string', help: '' },
  { name: 'v', short: 'v', type: 'string', help: '' },
  { name: 'feature-gates', type: 'map', help: '', noEffect: 'no gates' },
  { name: 'output', type: 'string', help: '', choices: ['text', 'json'], default: 'text' },
];
const usage = (argv: string[]) => {
  try {
    parseFlags(argv, SPECS);
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
  return undefined;
};

describe('flags', () => {
  it('takes pflag\'s spellings: --f=v, --f v, -v=2, -v 2, -v2, --v 2, _ for -, ParseBool values, repeats and commas', () => {
    for (const argv of [['-v=2'], ['-v', '2'], ['-v2'], ['--v', '2'], ['--v=2']]) expect(parseFlags(argv, SPECS).flags.v).toBe('2');
    expect(parseFlags(['--hostname_override=n1'], SPECS).flags['hostname-override']).toBe('n1');
    expect(parseFlags(['--hostname-override', 'n1'], SPECS).flags['hostname-override']).toBe('n1');
    for (const [v, want] of [['true', true], ['1', true], ['t', true], ['True', true], ['false', false], ['0', false], ['F', false]] as const) {
      expect(parseFlags([`--masquerade-all=${v}`], SPECS).flags['masquerade-all']).toBe(want);
    }
    expect(parseFlags(['--masquerade_all'], SPECS).flags['masquerade-all']).toBe(true);
    expect(parseFlags(['--cluster-cidr=10.0.0.0/8,fd00::/48', '--cluster-cidr', '10.1.0.0/16'], SPECS).flags['cluster-cidr']).toEqual(['10.0.0.0/8', 'fd00::/48', '10.1.0.0/16']);
    expect(parseFlags(['--feature-gates=A=true,B=f', '--feature-gates', 'A=false'], SPECS).flags['feature-gates']).toEqual({ A: false, B: false });
    expect(parseFlags([], SPECS).flags.output).toBe('text');
  });

  it('names the flag in every error: unknown, missing value, bad boolean, bad choice, bad gate', () => {
    expect(usage(['--bogus'])).toBe('unknown flag --bogus');
    expect(usage(['-x'])).toBe('unknown flag -x');
    expect(usage(['--hostname-override'])).toMatch(/^--hostname-override needs a value/);
    expect(usage(['--hostname-override', '--masquerade-all'])).toMatch(/^--hostname-override needs a value/);
    expect(usage(['--masquerade-all=yes'])).toBe('--masquerade-all takes true or false, not "yes"');
    expect(usage(['--output', 'yaml'])).toBe('--output must be one of text, json, not "yaml"');
    expect(usage(['--feature-gates=A'])).toBe('--feature-gates: "A" is not KEY=true or KEY=false');
  });

  it('says what has no effect, once per flag given, with the gates given', () => {
    const { flags } = parseFlags(['--feature-gates=A=true'], SPECS);
    expect(noEffectFlags(flags, SPECS)).toEqual(['--feature-gates: accepted, no effect: no gates (given: A=true)']);
    expect(noEffectFlags(parseFlags([], SPECS).flags, SPECS)).toEqual([]);
  });

  it('accepts every flag of kube-proxy (the table in docs/kube-proxy-reference.md, read from its sources)', () => {
    const doc = fs.readFileSync(path.join(REPO, 'docs', 'kube-proxy-reference.md'), 'utf8');
    const table = doc.slice(doc.indexOf('### 1.2 Flag table'), doc.indexOf('Not present:'));
    const names = [...table.matchAll(/^\| ([^|]+) \|/gm)].flatMap((m) => [...m[1].matchAll(/`--?([a-z][a-z0-9-]*)`/g)].map((x) => x[1]));
    expect(names.length).toBeGreaterThan(55);
    const known = new Set([...KUBE_PROXY_FLAGS.map((f) => f.name), 'help', 'h', ...KUBE_PROXY_FLAGS.flatMap((f) => (f.short ? [f.short] : []))]);
    expect(names.filter((n) => !known.has(n))).toEqual([]);
  });
});

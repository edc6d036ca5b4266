// Reads Services and EndpointSlices from a directory of manifests (what `kubectl apply -f DIR` would take), for
// running svcplane without an API server: demos, tests, and nodes fed by a ConfigMap.
//
// Every *.yaml, *.yml and *.json file directly in the directory is read, in name order. YAML files may hold several
// documents; JSON files hold one object. Either may be a List (`kubectl get -o json|yaml` writes `kind: List`, the
// API server's list responses are `ServiceList`/`EndpointSliceList` whose items lack kind and apiVersion). Only
// core/v1 Services and discovery.k8s.io/v1 EndpointSlices are kept; other kinds are ignored without a word, so a
// directory of full application manifests works. A file or document that cannot be read or parsed yields one
// problem (naming "path" or "path#N", N counting documents from 1) and the rest still loads. The objects are not
// validated here: the model does that and names the objects in its problems.

import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { KubeEndpointSlice, KubeService, ModelProblem } from '../model/types';

export interface Manifests {
  services: KubeService[];
  slices: KubeEndpointSlice[];
  problems: ModelProblem[];
  /** Paths (DIR joined with the file name) of the manifest files read, in the order read. */
  files: string[];
}

export const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;

const SERVICE = { apiVersion: 'v1', kind: 'Service' } as const;
const ENDPOINT_SLICE = { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' } as const;

/** List kinds and what their items are when an item does not say (API server list responses). */
const LISTS: Record<string, { apiVersion: string; item?: { apiVersion: string; kind: string } }> = {
  List: { apiVersion: 'v1' },
  ServiceList: { apiVersion: 'v1', item: SERVICE },
  EndpointSliceList: { apiVersion: 'discovery.k8s.io/v1', item: ENDPOINT_SLICE },
};

/** Lists inside Lists are flattened (as kubectl does), up to this depth. */
const MAX_LIST_DEPTH = 4;

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** The first line of an error's message (YAML errors go on with a snippet of the source), without a trailing colon. */
function errorText(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n')[0].replace(/:\s*$/, '');
}

export function isManifestFile(name: string): boolean {
  return MANIFEST_EXTENSIONS.some((ext) => name.endsWith(ext) && name.length > ext.length);
}

/** Reads DIR; throws (naming DIR) when the directory itself is missing or unreadable, never for a single file. */
export async function loadManifests(dir: string): Promise<Manifests> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`manifest directory ${dir} does not exist`);
    if (code === 'ENOTDIR') throw new Error(`manifest directory ${dir} is not a directory`);
    throw new Error(`cannot read manifest directory ${dir}: ${errorText(e)}`);
  }
  const out: Manifests = { services: [], slices: [], problems: [], files: [] };
  // Code-unit order, not the locale's: the same directory loads the same way everywhere.
  for (const name of names.filter(isManifestFile).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const path = join(dir, name);
    let text: string;
    try {
      // stat follows symlinks: a ConfigMap volume's files are symlinks into its ..data directory.
      if (!(await stat(path)).isFile()) continue;
      text = await readFile(path, 'utf8');
    } catch (e) {
      out.files.push(path);
      out.problems.push({ object: path, message: `cannot read: ${errorText(e)}; file skipped` });
      continue;
    }
    out.files.push(path);
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (name.endsWith('.json')) loadJSON(path, text, out);
    else loadYAML(path, text, out);
  }
  return out;
}

function loadJSON(path: string, text: string, out: Manifests): void {
  if (text.trim() === '') return;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    out.problems.push({ object: `${path}#1`, message: `invalid JSON: ${errorText(e)}; document skipped` });
    return;
  }
  collect(value, `${path}#1`, out, 0);
}

function loadYAML(path: string, text: string, out: Manifests): void {
  // Merge keys ("<<: *anchor") as in Kubernetes' YAML; duplicate keys are an error (kubectl rejects them too).
  const docs = parseAllDocuments(text, { merge: true, uniqueKeys: true });
  docs.forEach((doc, i) => {
    const where = `${path}#${i + 1}`;
    if (doc.errors.length > 0) {
      out.problems.push({ object: where, message: `invalid YAML: ${errorText(doc.errors[0])}; document skipped` });
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (e) {
      // e.g. an alias bomb ("Excessive alias count").
      out.problems.push({ object: where, message: `invalid YAML: ${errorText(e)}; document skipped` });
      return;
    }
    collect(value, where, out, 0);
  });
}

/** Files VALUE (one parsed document, or a List item) under services or slices, or ignores it. */
function collect(value: unknown, where: string, out: Manifests, depth: number, defaults?: { apiVersion: string; kind: string }): void {
  if (value === null || value === undefined) return; // empty document
  if (!isRecord(value)) {
    const what = Array.isArray(value) ? 'a list' : `a ${typeof value}`;
    out.problems.push({ object: where, message: `${what}, not a Kubernetes object (a mapping with apiVersion and kind); skipped` });
    return;
  }
  const obj = defaults && value.kind === undefined && value.apiVersion === undefined ? { ...defaults, ...value } : value;
  const { apiVersion, kind } = obj;
  if (apiVersion === SERVICE.apiVersion && kind === SERVICE.kind) {
    out.services.push(obj as KubeService);
    return;
  }
  if (apiVersion === ENDPOINT_SLICE.apiVersion && kind === ENDPOINT_SLICE.kind) {
    out.slices.push(obj as KubeEndpointSlice);
    return;
  }
  const list = typeof kind === 'string' && Object.prototype.hasOwnProperty.call(LISTS, kind) ? LISTS[kind] : undefined;
  if (!list || apiVersion !== list.apiVersion) return; // some other kind: not ours
  const items = obj.items;
  if (items === undefined || items === null) return; // an empty list, as `kubectl get -o json` writes it
  if (!Array.isArray(items)) {
    out.problems.push({ object: where, message: `${kind} items is not a list; skipped` });
    return;
  }
  if (depth >= MAX_LIST_DEPTH) {
    out.problems.push({ object: where, message: `Lists nested more than ${MAX_LIST_DEPTH} deep; skipped` });
    return;
  }
  items.forEach((item: unknown, i) => collect(item, `${where} items[${i}]`, out, depth + 1, list.item));
}

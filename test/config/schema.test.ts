/**
 * The generated JSON Schema: accepts the example configuration and rejects
 * what the validator rejects for shape (unknown keys, missing service). Checked
 * with a small evaluator of the keywords the generator emits, so the test
 * needs no schema library.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { jsonSchema } from '../../src/config/schema.js';
import { repoRoot } from './fixtures.js';

type Schema = Record<string, unknown>;

/** Errors of `value` against `schema` (the subset of draft 2020-12 that z.toJSONSchema emits here). */
function check(schema: Schema, value: unknown, at = '$'): string[] {
  const errs: string[] = [];
  if (Array.isArray(schema.anyOf)) {
    const results = (schema.anyOf as Schema[]).map((s) => check(s, value, at));
    if (!results.some((r) => r.length === 0)) errs.push(`${at}: matches no anyOf branch (${results.map((r) => r[0]).join(' | ')})`);
  }
  const types = schema.type === undefined ? [] : ([] as string[]).concat(schema.type as string | string[]);
  const isObj = value !== null && typeof value === 'object' && !Array.isArray(value);
  const is = (type: string): boolean =>
    (type === 'object' && isObj) ||
    (type === 'array' && Array.isArray(value)) ||
    (type === 'string' && typeof value === 'string') ||
    (type === 'number' && typeof value === 'number') ||
    (type === 'integer' && Number.isInteger(value)) ||
    (type === 'boolean' && typeof value === 'boolean');
  if (types.length > 0 && !types.some(is)) return [...errs, `${at}: expected ${types.join(' or ')}`];
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) errs.push(`${at}: not in enum`);
  if (typeof value === 'string' && typeof schema.pattern === 'string' && !new RegExp(schema.pattern).test(value)) errs.push(`${at}: does not match ${schema.pattern}`);
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) errs.push(`${at}: below minimum`);
    if (typeof schema.maximum === 'number' && value > schema.maximum) errs.push(`${at}: above maximum`);
    if (typeof schema.exclusiveMinimum === 'number' && value <= schema.exclusiveMinimum) errs.push(`${at}: not above exclusiveMinimum`);
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => errs.push(...check(schema.items as Schema, v, `${at}[${i}]`)));
  if (isObj) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) errs.push(`${at}: missing ${r}`);
    for (const [k, v] of Object.entries(obj)) {
      if (props[k]) errs.push(...check(props[k], v, `${at}.${k}`));
      else if (schema.additionalProperties === false) errs.push(`${at}: unknown key ${k}`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === 'object') errs.push(...check(schema.additionalProperties as Schema, v, `${at}.${k}`));
    }
  }
  return errs;
}

const platform = jsonSchema('platform');
const site = jsonSchema('site');
const example = (rel: string): unknown => parse(readFileSync(path.join(repoRoot, 'examples/quickstart', rel), 'utf8'));

test('the JSON Schema accepts the example configuration and the golden one', () => {
  assert.deepEqual(check(platform, example('perimeter.yaml')), []);
  assert.deepEqual(check(site, example('sites/demo-team.yaml')), []);
  const full = parse(readFileSync(path.join(repoRoot, 'test/golden/full/config/perimeter.yaml'), 'utf8')) as unknown;
  assert.deepEqual(check(platform, full), []);
});

test('the JSON Schema rejects unknown keys and a site without service', () => {
  assert.deepEqual(check(site, { 'www.example.com': { sevice: 'x' } }), ['$.www.example.com: missing service', '$.www.example.com: unknown key sevice']);
  assert.deepEqual(check(site, { 'www.example.com': { service: 'x', hsts: false } }), ['$.www.example.com: unknown key hsts']);
  assert.ok(check(platform, { clusters: { web: { listen: { http: ':80' }, lsiten: {} } } }).includes('$.clusters.web: unknown key lsiten'));
  assert.ok(check(platform, { clusters: { web: { listen: { http: ':80' }, timeouts: { connect: 5 } } } }).length > 0, 'a duration without unit');
  assert.ok(check(platform, { defaults: {} }).includes('$: missing clusters'));
});

test('the combined schema holds both file kinds as $defs', () => {
  const all = jsonSchema('all') as { $schema: string; $defs: Record<string, Schema> };
  assert.equal(all.$schema, 'https://json-schema.org/draft/2020-12/schema');
  assert.equal(all.$defs.site?.additionalProperties && (all.$defs.site.additionalProperties as Schema).additionalProperties, false);
  assert.deepEqual((all.$defs.site?.additionalProperties as Schema).required, ['service']);
});

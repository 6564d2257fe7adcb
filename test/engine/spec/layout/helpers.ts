/**
 * Shared by the layout tests of the field tables in src/engine/spec: the
 * exported structures, found by shape.
 */
import * as spec from '../../../../src/engine/spec/index.js';
import type { Field } from '../../../../src/engine/spec/index.js';

export type AnyStruct = { readonly $name: string; readonly $size: number; readonly $fields: readonly Field[] };

function isStruct(v: unknown): v is AnyStruct {
  return typeof v === 'object' && v !== null && '$fields' in v && '$size' in v && '$name' in v;
}

export const exportedStructs: Array<[string, AnyStruct]> = (Object.entries(spec) as Array<[string, unknown]>).filter((e): e is [string, AnyStruct] => isStruct(e[1]));

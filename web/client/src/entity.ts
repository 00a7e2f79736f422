// Client-side entities and their attribute trees (docs/PROTOCOL.md §3.3, §6): the six
// attribute messages applied to plain objects/arrays the way GoWorld's Go client applies
// them, and the table of entities the client knows.

import type { PathStep } from "./codec.js";
import { setOwn, Value, ValueMap } from "./msgpack.js";

/** The type name of spaces. */
export const SPACE_TYPE = "__space__";

/** An entity the client knows: its player, its space, or a neighbour in the player's AOI. */
export class Entity {
  /** True while this is the client's player entity. */
  isPlayer = false;
  x = 0;
  y = 0;
  z = 0;
  yaw = 0;

  constructor(
    /** The 16-character entity ID. */
    public readonly id: string,
    /** The entity type, `__space__` for a space. */
    public readonly type: string,
    /** Client-visible attributes (for a space: `{_K: kind}`), kept in sync by 1004-1008, 1012. */
    public readonly attrs: ValueMap = {},
  ) {}

  /** True for a space. */
  get isSpace(): boolean {
    return this.type === SPACE_TYPE;
  }

  /** A space's kind (its `_K` attribute); undefined for other entities. */
  get kind(): number | undefined {
    if (!this.isSpace) return undefined;
    const k = this.attrs._K;
    return typeof k === "number" ? k : typeof k === "bigint" ? Number(k) : undefined;
  }

  /** The attribute `name` at the root (undefined if absent). */
  attr(name: string): Value | undefined {
    return Object.prototype.hasOwnProperty.call(this.attrs, name) ? this.attrs[name] : undefined;
  }

  /** The value at `path` (root first), or undefined if the path does not lead anywhere. */
  get(path: readonly PathStep[]): Value | undefined {
    let cur: Value | undefined = this.attrs;
    for (const step of path) {
      if (Array.isArray(cur) && typeof step === "number") cur = cur[step];
      else if (isMap(cur) && typeof step === "string" && Object.prototype.hasOwnProperty.call(cur, step)) cur = cur[step];
      else return undefined;
    }
    return cur;
  }
}

/** An attribute update that does not fit the entity's tree (a missing step, a wrong kind). */
export class AttrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AttrError";
  }
}

/** One attribute operation, root-first `path` naming the container it changes. */
export type AttrOp =
  | { op: "set"; path: PathStep[]; key: string; value: Value }
  | { op: "delete"; path: PathStep[]; key: string }
  | { op: "clear"; path: PathStep[] }
  | { op: "listSet"; path: PathStep[]; index: number; value: Value }
  | { op: "pop"; path: PathStep[] }
  | { op: "append"; path: PathStep[]; value: Value };

export function isMap(v: Value | undefined): v is ValueMap {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    !(v instanceof Uint8Array) &&
    Object.getPrototypeOf(v) === Object.prototype
  );
}

/** `complexAttr.key1.key2[1][0]`, for messages. */
export function showPath(path: readonly PathStep[]): string {
  let s = "";
  for (const step of path) s += typeof step === "number" ? `[${step}]` : s === "" ? step : `.${step}`;
  return s === "" ? "<root>" : s;
}

function describe(v: Value | undefined): string {
  if (v === undefined) return "nothing";
  if (v === null) return "nil";
  if (Array.isArray(v)) return "list";
  if (isMap(v)) return "map";
  if (v instanceof Uint8Array) return "binary";
  return typeof v;
}

function walk(root: ValueMap, path: readonly PathStep[]): Value {
  let cur: Value = root;
  path.forEach((step, i) => {
    if (typeof step === "number") {
      if (!Array.isArray(cur)) throw new AttrError(`${showPath(path)}: step [${step}] into a ${describe(cur)}`);
      if (step >= cur.length) throw new AttrError(`${showPath(path)}: index ${step} out of range (${cur.length})`);
      cur = cur[step];
    } else {
      if (!isMap(cur)) throw new AttrError(`${showPath(path)}: step ${JSON.stringify(step)} into a ${describe(cur)}`);
      if (!Object.prototype.hasOwnProperty.call(cur, step)) {
        throw new AttrError(`no key ${JSON.stringify(step)} on the path ${showPath(path.slice(0, i))}`);
      }
      cur = cur[step];
    }
  });
  return cur;
}

function mapAt(root: ValueMap, path: readonly PathStep[]): ValueMap {
  const v = walk(root, path);
  if (!isMap(v)) throw new AttrError(`${showPath(path)} is a ${describe(v)}, not a map`);
  return v;
}

function listAt(root: ValueMap, path: readonly PathStep[]): Value[] {
  const v = walk(root, path);
  if (!Array.isArray(v)) throw new AttrError(`${showPath(path)} is a ${describe(v)}, not a list`);
  return v;
}

/**
 * Applies `op` to the attribute tree `root` in place. Returns the value removed (the old
 * value of a set or delete, the popped item), or undefined. Throws AttrError when the op
 * does not fit the tree; the tree is unchanged then.
 */
export function applyAttrOp(root: ValueMap, op: AttrOp): Value | undefined {
  switch (op.op) {
    case "set": {
      const m = mapAt(root, op.path);
      const old = Object.prototype.hasOwnProperty.call(m, op.key) ? m[op.key] : undefined;
      setOwn(m, op.key, op.value);
      return old;
    }
    case "delete": {
      const m = mapAt(root, op.path);
      // Deleting an absent key is fine, as Go's delete.
      if (!Object.prototype.hasOwnProperty.call(m, op.key)) return undefined;
      const old = m[op.key];
      delete m[op.key];
      return old;
    }
    case "clear": {
      const m = mapAt(root, op.path);
      for (const k of Object.keys(m)) delete m[k];
      return undefined;
    }
    case "listSet": {
      const l = listAt(root, op.path);
      if (op.index >= l.length) {
        throw new AttrError(`list change at ${showPath(op.path)}[${op.index}] but the list has ${l.length} items`);
      }
      const old = l[op.index];
      l[op.index] = op.value;
      return old;
    }
    case "pop": {
      const l = listAt(root, op.path);
      if (l.length === 0) throw new AttrError(`pop from the empty list ${showPath(op.path)}`);
      return l.pop();
    }
    case "append":
      listAt(root, op.path).push(op.value);
      return undefined;
  }
}

/** The entities a client knows, by ID. */
export class EntityTable {
  private readonly byId = new Map<string, Entity>();

  get size(): number {
    return this.byId.size;
  }
  get(id: string): Entity | undefined {
    return this.byId.get(id);
  }
  has(id: string): boolean {
    return this.byId.has(id);
  }
  add(e: Entity): void {
    this.byId.set(e.id, e);
  }
  remove(id: string): Entity | undefined {
    const e = this.byId.get(id);
    this.byId.delete(id);
    return e;
  }
  clear(): Entity[] {
    const all = [...this.byId.values()];
    this.byId.clear();
    return all;
  }
  values(): IterableIterator<Entity> {
    return this.byId.values();
  }
  [Symbol.iterator](): IterableIterator<Entity> {
    return this.byId.values();
  }
}

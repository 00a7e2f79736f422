// The client's typed events: their payload types and a small emitter. A listener that
// throws does not stop the others; its error is reported through `onListenerError`.

import type { PathStep, ServerMessage } from "./codec.js";
import type { Entity } from "./entity.js";
import type { Value } from "./msgpack.js";

/** The connection state. */
export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

/** What kind of trouble an 'error' event reports. */
export type ClientErrorKind =
  /** A frame or message from the server that does not decode (fatal: the socket closes). */
  | "protocol"
  /** A message type a client does not expect (not fatal: the frame is skipped). */
  | "unknown-message"
  /** An attribute update that does not fit the entity (fatal). */
  | "attr"
  /** An update or call for an entity the client does not know (not fatal: ignored). */
  | "unknown-entity"
  /** A listener or method handler threw (not fatal). */
  | "handler"
  /** The socket failed or could not be created. */
  | "socket"
  /** A send that could not be made (not connected, no player). */
  | "send";

/** The payload of the 'error' event. */
export class ClientError extends Error {
  constructor(
    public readonly kind: ClientErrorKind,
    message: string,
    /** True when the client closed the connection because of it. */
    public readonly fatal: boolean,
    public readonly cause?: unknown,
  ) {
    super(message);
    this.name = "ClientError";
  }
}

/** The payload of the 'attrChanged' event. */
export interface AttrChange {
  entity: Entity;
  op: "set" | "delete" | "clear" | "listSet" | "pop" | "append";
  /** The container changed, root first: `[]` for a root attribute. */
  path: PathStep[];
  /** The map key (set/delete) or list index (listSet; the new index for append). */
  key?: string | number;
  /** The new value (set, listSet, append). */
  value?: Value;
  /** The value replaced or removed (set, delete, listSet, pop), if any. */
  old?: Value;
  /** The root attribute concerned: `path[0]`, or the key of a root-level set/delete. */
  name: string | undefined;
}

/** The payload of the 'call' event: a method the server calls on a client entity. */
export interface CallEvent {
  /** The entity called: the one named by a 1009, the player for a 1501. */
  entityId: string | null;
  /** That entity, if the client knows it. */
  entity: Entity | null;
  method: string;
  args: Value[];
  /** True for a 1501 (CALL_FILTERED_CLIENTS). */
  filtered: boolean;
  /** True when a registered method handler ran for it. */
  handled: boolean;
}

/** Every event and its listener's argument. */
export interface ClientEvents {
  /** The connection state changed. */
  state: { state: ConnectionState; previous: ConnectionState };
  /** An entity appeared (1002). Fired after the table, player and space are updated. */
  entityCreated: Entity;
  /** An entity went (1003, or `reason: "reset"` when a connection ends). */
  entityDestroyed: { entity: Entity; reason: "server" | "reset" };
  /** An attribute changed (1004-1008, 1012). */
  attrChanged: AttrChange;
  /** An entity moved (1502, or `local: true` for the player's own syncPosition). */
  position: { entity: Entity; x: number; y: number; z: number; yaw: number; local: boolean };
  /** The player entity changed (a 1002 with isPlayer, its 1003, a reset). */
  playerChanged: { player: Entity | null; previous: Entity | null };
  /** The player's space changed (a space's 1002 or 1003, a reset). */
  spaceChanged: { space: Entity | null; previous: Entity | null };
  /** The server called a client method (1009 or 1501). */
  call: CallEvent;
  /** The entity table was cleared because the connection ended. */
  reset: { entities: Entity[] };
  /** Every decoded message, before it is applied (for debugging and tools). */
  message: ServerMessage;
  /** Something went wrong; see ClientError.kind and .fatal. */
  error: ClientError;
}

export type EventName = keyof ClientEvents;
export type Listener<K extends EventName> = (payload: ClientEvents[K]) => void;

/** A typed event emitter. */
export class Emitter<E> {
  private readonly listeners = new Map<keyof E, Set<(p: never) => void>>();

  /** Called with a listener's exception (the default rethrows it asynchronously). */
  onListenerError: (err: unknown, event: keyof E) => void = (err) => {
    setTimeout(() => {
      throw err;
    }, 0);
  };

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof E>(event: K, fn: (payload: E[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as (p: never) => void);
    return () => this.off(event, fn);
  }

  /** Adds a listener that runs once. */
  once<K extends keyof E>(event: K, fn: (payload: E[K]) => void): () => void {
    const off = this.on(event, (p) => {
      off();
      fn(p);
    });
    return off;
  }

  off<K extends keyof E>(event: K, fn: (payload: E[K]) => void): void {
    this.listeners.get(event)?.delete(fn as (p: never) => void);
  }

  /** Calls every listener of `event` with `payload`; returns how many there were. */
  emit<K extends keyof E>(event: K, payload: E[K]): number {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return 0;
    for (const fn of [...set]) {
      try {
        (fn as (p: E[K]) => void)(payload);
      } catch (err) {
        this.onListenerError(err, event);
      }
    }
    return set.size;
  }
}

// The client: one WebSocket to a gate's /ws carrying the framed stream (docs/PROTOCOL.md
// §1.1), the entity table it keeps in sync, the three messages it sends, method handlers
// for the server's calls, heartbeats, and reconnection with backoff.

import {
  decodeServerMessage,
  encodeCall,
  encodeHeartbeat,
  encodeSyncPosition,
  ProtocolError,
  ServerMessage,
  UnknownMessageError,
} from "./codec.js";
import { applyAttrOp, AttrError, AttrOp, Entity, EntityTable, isMap, SPACE_TYPE } from "./entity.js";
import { ClientError, ClientEvents, ConnectionState, Emitter } from "./events.js";
import { FrameError, FrameReader, frame, DEFAULT_MAX_FRAME } from "./frame.js";
import type { Encodable, Value } from "./msgpack.js";

/** The part of the browser's WebSocket the client uses (so tests can pass a fake). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** Makes the socket for `url`. The default uses the global WebSocket. */
export type SocketFactory = (url: string) => WebSocketLike;

/** Reconnection backoff: minDelayMs, then times `factor` per failed attempt, up to maxDelayMs. */
export interface ReconnectOptions {
  minDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
}

export interface ClientOptions {
  /** The gate's WebSocket endpoint, e.g. `ws://127.0.0.1:15012/ws`. */
  url: string;
  /** Creates the socket (default: `new WebSocket(url)`). */
  createSocket?: SocketFactory;
  /** Send a 2001 heartbeat this often while connected (default 10000; 0 = never). */
  heartbeatMs?: number;
  /** Reconnect after the connection ends (default true, 500 ms doubling up to 10 s). */
  reconnect?: boolean | ReconnectOptions;
  /** Largest frame accepted from the server (default 32 MiB). */
  maxFrame?: number;
  /** Connect at once (default false: call connect()). */
  autoConnect?: boolean;
}

/** A method handler: the entity called, then the call's arguments. */
export type MethodHandler = (entity: Entity, ...args: Value[]) => void;

/** The type key that matches every entity type in onMethod/registerMethods. */
export const ANY_TYPE = "*";

function defaultSocketFactory(url: string): WebSocketLike {
  const WS = (globalThis as unknown as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  if (!WS) throw new Error("no global WebSocket: pass createSocket in the ClientOptions");
  return new WS(url);
}

function toBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/**
 * A connection to a gate and the world as the client sees it.
 *
 * ```ts
 * const c = new Client({ url: "ws://127.0.0.1:15012/ws" });
 * c.on("playerChanged", ({ player }) => { if (player?.type === "Account") c.callPlayer("Login", "me", "123456"); });
 * c.connect();
 * ```
 */
export class Client extends Emitter<ClientEvents> {
  /** Every entity the client knows (player, space, neighbours). */
  readonly entities = new EntityTable();
  /** The player entity: the last 1002 with isPlayer, until its 1003. */
  player: Entity | null = null;
  /** The space the player is in (the last `__space__` created), until its 1003. */
  space: Entity | null = null;

  private _state: ConnectionState = "idle";
  private sock: WebSocketLike | null = null;
  private readonly reader: FrameReader;
  private readonly createSocket: SocketFactory;
  private readonly heartbeatMs: number;
  private readonly reconnect: Required<ReconnectOptions> | null;
  private attempt = 0;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly handlers = new Map<string, Map<string, MethodHandler>>();
  private connectedOnce = false;
  /** Bumped whenever a connection's state is dropped. */
  private generation = 0;

  constructor(readonly options: ClientOptions) {
    super();
    this.createSocket = options.createSocket ?? defaultSocketFactory;
    this.heartbeatMs = options.heartbeatMs ?? 10000;
    const r = options.reconnect ?? true;
    this.reconnect =
      r === false
        ? null
        : {
            minDelayMs: (r === true ? undefined : r.minDelayMs) ?? 500,
            maxDelayMs: (r === true ? undefined : r.maxDelayMs) ?? 10000,
            factor: (r === true ? undefined : r.factor) ?? 2,
          };
    this.reader = new FrameReader(options.maxFrame ?? DEFAULT_MAX_FRAME);
    this.onListenerError = (err, event) => {
      if (event === "error") {
        setTimeout(() => {
          throw err;
        }, 0);
      } else {
        this.emit("error", new ClientError("handler", `a '${String(event)}' listener threw: ${err}`, false, err));
      }
    };
    if (options.autoConnect) this.connect();
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this._state;
  }

  /** True when the socket is open. */
  get connected(): boolean {
    return this._state === "connected";
  }

  /** Opens the connection (no-op unless idle or closed). */
  connect(): void {
    if (this._state !== "idle" && this._state !== "closed") return;
    this.attempt = 0;
    this.connectedOnce = false;
    this.open("connecting");
  }

  /** Closes the connection for good (no reconnect); the entity table is cleared. */
  close(): void {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const sock = this.sock;
    this.teardown();
    if (sock) {
      try {
        sock.close(1000, "client closed");
      } catch {
        // Already closed.
      }
    }
    this.setState("closed");
  }

  /** Calls `method` of entity `entityId` on the server (11). False when not connected. */
  call(entityId: string, method: string, ...args: Encodable[]): boolean {
    return this.sendPayload(() => encodeCall(entityId, method, args), `call ${method}`);
  }

  /** Calls `method` of the player entity (11). False when not connected or no player. */
  callPlayer(method: string, ...args: Encodable[]): boolean {
    if (!this.player) {
      this.emit("error", new ClientError("send", `callPlayer(${method}) without a player entity`, false));
      return false;
    }
    return this.call(this.player.id, method, ...args);
  }

  /**
   * Moves the player to (x, y, z, yaw) and reports it to the server (12). The server uses
   * it only while client syncing is on for the player. Fires 'position' with local: true.
   */
  syncPosition(x: number, y: number, z: number, yaw?: number): boolean {
    const p = this.player;
    if (!p) {
      this.emit("error", new ClientError("send", "syncPosition without a player entity", false));
      return false;
    }
    p.x = x;
    p.y = y;
    p.z = z;
    if (yaw !== undefined) p.yaw = yaw;
    this.emit("position", { entity: p, x, y, z, yaw: p.yaw, local: true });
    return this.sendPayload(() => encodeSyncPosition(p.id, p), "syncPosition");
  }

  /** Sends a 2001 heartbeat now (the client also sends them every heartbeatMs). */
  heartbeat(): boolean {
    return this.sendPayload(encodeHeartbeat, "heartbeat");
  }

  /**
   * Registers `handler` for calls of `method` on entities of `type` (ANY_TYPE = every
   * type). Returns a function that unregisters it.
   */
  onMethod(type: string, method: string, handler: MethodHandler): () => void {
    let m = this.handlers.get(type);
    if (!m) this.handlers.set(type, (m = new Map()));
    m.set(method, handler);
    return () => {
      if (this.handlers.get(type)?.get(method) === handler) this.handlers.get(type)?.delete(method);
    };
  }

  /** Registers every function of `methods` as a handler for entities of `type`. */
  registerMethods(type: string, methods: Record<string, MethodHandler>): () => void {
    const offs = Object.keys(methods).map((name) => this.onMethod(type, name, methods[name]));
    return () => offs.forEach((off) => off());
  }

  /** Entities other than the player and spaces, optionally only those of `type`. */
  neighbours(type?: string): Entity[] {
    const out: Entity[] = [];
    for (const e of this.entities) {
      if (e === this.player || e.isSpace) continue;
      if (type === undefined || e.type === type) out.push(e);
    }
    return out;
  }

  /**
   * Feeds bytes from the socket: reassembles frames and applies each message. Exposed for
   * tools and tests; the client calls it for every socket message.
   */
  receive(bytes: Uint8Array): void {
    let payloads: Uint8Array[];
    try {
      payloads = this.reader.push(bytes);
    } catch (e) {
      this.fatal(new ClientError("protocol", (e as FrameError).message, true, e));
      return;
    }
    const gen = this.generation;
    for (const p of payloads) {
      if (this.generation !== gen) return; // a fatal error closed the connection
      this.handlePayload(p);
    }
  }

  // -------------------------------------------------------------------------------------
  // Connection
  // -------------------------------------------------------------------------------------

  private setState(s: ConnectionState): void {
    if (s === this._state) return;
    const previous = this._state;
    this._state = s;
    this.emit("state", { state: s, previous });
  }

  private open(state: "connecting" | "reconnecting"): void {
    this.reconnectTimer = null;
    this.setState(state);
    let sock: WebSocketLike;
    try {
      sock = this.createSocket(this.options.url);
    } catch (e) {
      this.emit("error", new ClientError("socket", `cannot open ${this.options.url}: ${e}`, false, e));
      this.afterClose();
      return;
    }
    this.sock = sock;
    this.reader.reset();
    sock.binaryType = "arraybuffer";
    sock.onopen = () => {
      if (this.sock !== sock) return;
      this.attempt = 0;
      this.connectedOnce = true;
      this.setState("connected");
      if (this.heartbeatMs > 0) this.heartbeatTimer = setInterval(() => this.heartbeat(), this.heartbeatMs);
    };
    sock.onmessage = (ev) => {
      if (this.sock !== sock) return;
      const b = toBytes(ev.data);
      if (!b) {
        this.fatal(new ClientError("protocol", `a ${typeof ev.data} WebSocket message; the stream is binary`, true));
        return;
      }
      this.receive(b);
    };
    sock.onerror = () => {
      if (this.sock !== sock) return;
      this.emit("error", new ClientError("socket", `WebSocket error on ${this.options.url}`, false));
    };
    sock.onclose = () => {
      if (this.sock !== sock) return;
      this.teardown();
      this.afterClose();
    };
  }

  /** Forgets the socket and the world it carried. */
  private teardown(): void {
    const sock = this.sock;
    this.sock = null;
    this.generation++;
    if (sock) sock.onopen = sock.onmessage = sock.onerror = sock.onclose = null;
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.reader.reset();
    this.resetWorld();
  }

  /** After a connection ended (or failed to open): schedule a reconnect, or closed. */
  private afterClose(): void {
    if (!this.reconnect) {
      this.setState("closed");
      return;
    }
    const r = this.reconnect;
    const delay = Math.min(r.maxDelayMs, r.minDelayMs * Math.pow(r.factor, this.attempt));
    this.attempt++;
    const state = this.connectedOnce ? "reconnecting" : "connecting";
    this.setState(state);
    this.reconnectTimer = setTimeout(() => this.open(state), delay);
  }

  private resetWorld(): void {
    const entities = this.entities.clear();
    const player = this.player;
    const space = this.space;
    this.player = null;
    this.space = null;
    for (const e of entities) {
      e.isPlayer = false;
      this.emit("entityDestroyed", { entity: e, reason: "reset" });
    }
    if (player) this.emit("playerChanged", { player: null, previous: player });
    if (space) this.emit("spaceChanged", { space: null, previous: space });
    if (entities.length > 0 || player || space) this.emit("reset", { entities });
  }

  /** Reports `err` and drops the connection (a reconnect follows if enabled). */
  private fatal(err: ClientError): void {
    this.emit("error", err);
    const sock = this.sock;
    this.teardown();
    if (!sock) return;
    try {
      sock.close(4000, "malformed input");
    } catch {
      // Already closed.
    }
    this.afterClose();
  }

  private sendPayload(make: () => Uint8Array, what: string): boolean {
    if (!this.sock || this._state !== "connected") {
      this.emit("error", new ClientError("send", `${what}: not connected`, false));
      return false;
    }
    let payload: Uint8Array;
    try {
      payload = make();
    } catch (e) {
      this.emit("error", new ClientError("send", `${what}: ${e instanceof Error ? e.message : e}`, false, e));
      return false;
    }
    try {
      this.sock.send(frame(payload));
    } catch (e) {
      this.emit("error", new ClientError("socket", `${what}: send failed: ${e}`, false, e));
      return false;
    }
    return true;
  }

  // -------------------------------------------------------------------------------------
  // Messages
  // -------------------------------------------------------------------------------------

  private handlePayload(p: Uint8Array): void {
    let m: ServerMessage;
    try {
      m = decodeServerMessage(p);
    } catch (e) {
      if (e instanceof UnknownMessageError) {
        this.emit("error", new ClientError("unknown-message", e.message, false, e));
        return;
      }
      const msg = e instanceof ProtocolError ? e.message : `decoding failed: ${e}`;
      this.fatal(new ClientError("protocol", msg, true, e));
      return;
    }
    this.emit("message", m);
    switch (m.kind) {
      case "create":
        return this.onCreate(m);
      case "destroy":
        return this.onDestroy(m.id);
      case "mapSet":
        return this.onAttr(m.id, { op: "set", path: m.path, key: m.key, value: m.value });
      case "mapDelete":
        return this.onAttr(m.id, { op: "delete", path: m.path, key: m.key });
      case "mapClear":
        return this.onAttr(m.id, { op: "clear", path: m.path });
      case "listSet":
        return this.onAttr(m.id, { op: "listSet", path: m.path, index: m.index, value: m.value });
      case "listPop":
        return this.onAttr(m.id, { op: "pop", path: m.path });
      case "listAppend":
        return this.onAttr(m.id, { op: "append", path: m.path, value: m.value });
      case "call":
        return this.onCall(m.id, this.entities.get(m.id) ?? null, m.method, m.args, false);
      case "filteredCall":
        return this.onCall(this.player?.id ?? null, this.player, m.method, m.args, true);
      case "positions":
        for (const r of m.records) {
          const e = this.entities.get(r.id);
          if (!e) continue; // 1502 may overtake a 1002 or lag a 1003 (§8)
          e.x = r.x;
          e.y = r.y;
          e.z = r.z;
          e.yaw = r.yaw;
          this.emit("position", { entity: e, x: r.x, y: r.y, z: r.z, yaw: r.yaw, local: false });
        }
        return;
    }
  }

  private onCreate(m: Extract<ServerMessage, { kind: "create" }>): void {
    let attrs = m.clientData;
    if (attrs === null) attrs = {};
    if (!isMap(attrs)) {
      this.fatal(new ClientError("protocol", `${m.typeName}<${m.id}> created with clientData that is not a map`, true));
      return;
    }
    if (this.entities.has(m.id)) this.onDestroy(m.id);
    const e = new Entity(m.id, m.typeName, attrs);
    e.x = m.x;
    e.y = m.y;
    e.z = m.z;
    e.yaw = m.yaw;
    this.entities.add(e);
    const prevPlayer = this.player;
    const prevSpace = this.space;
    if (m.isPlayer) {
      if (prevPlayer) prevPlayer.isPlayer = false;
      e.isPlayer = true;
      this.player = e;
    }
    if (m.typeName === SPACE_TYPE) this.space = e;
    this.emit("entityCreated", e);
    if (this.player !== prevPlayer) this.emit("playerChanged", { player: this.player, previous: prevPlayer });
    if (this.space !== prevSpace) this.emit("spaceChanged", { space: this.space, previous: prevSpace });
  }

  private onDestroy(id: string): void {
    const e = this.entities.remove(id);
    if (!e) {
      this.emit("error", new ClientError("unknown-entity", `destroy of unknown entity ${id}`, false));
      return;
    }
    const wasPlayer = this.player === e;
    const wasSpace = this.space === e;
    if (wasPlayer) this.player = null;
    if (wasSpace) this.space = null;
    e.isPlayer = false;
    this.emit("entityDestroyed", { entity: e, reason: "server" });
    if (wasPlayer) this.emit("playerChanged", { player: null, previous: e });
    if (wasSpace) this.emit("spaceChanged", { space: null, previous: e });
  }

  private onAttr(id: string, op: AttrOp): void {
    const e = this.entities.get(id);
    if (!e) {
      this.emit("error", new ClientError("unknown-entity", `attribute ${op.op} for unknown entity ${id}`, false));
      return;
    }
    let old: Value | undefined;
    let key: string | number | undefined;
    try {
      if (op.op === "append") {
        const before = e.get(op.path);
        key = Array.isArray(before) ? before.length : undefined;
      }
      old = applyAttrOp(e.attrs, op);
    } catch (err) {
      if (err instanceof AttrError) {
        this.fatal(new ClientError("attr", `${e.type}<${e.id}>: attribute update failed: ${err.message}`, true, err));
        return;
      }
      throw err;
    }
    if (op.op === "set" || op.op === "delete") key = op.key;
    if (op.op === "listSet") key = op.index;
    const name = op.path.length > 0 ? String(op.path[0]) : key !== undefined ? String(key) : undefined;
    this.emit("attrChanged", {
      entity: e,
      op: op.op,
      path: op.path,
      key,
      value: "value" in op ? op.value : undefined,
      old,
      name,
    });
  }

  private onCall(id: string | null, entity: Entity | null, method: string, args: Value[], filtered: boolean): void {
    let handled = false;
    if (entity) {
      const h = this.handlers.get(entity.type)?.get(method) ?? this.handlers.get(ANY_TYPE)?.get(method);
      if (h) {
        handled = true;
        try {
          h(entity, ...args);
        } catch (err) {
          this.emit("error", new ClientError("handler", `handler of ${entity.type}.${method} threw: ${err}`, false, err));
        }
      }
    }
    this.emit("call", { entityId: id, entity, method, args, filtered, handled });
  }
}

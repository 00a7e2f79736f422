//! test_game's login on the simulation, with storage and KVDB answered in memory in simulated
//! time:
//! a new user's login, a returning user's, GiveClientTo and what the client sees in what order
//! (checked the way GoWorld's Go client would take it), a client that leaves in the middle of
//! GiveClientTo, and calls between entities on different games; then the whole game, as the
//! test_game binary registers it, coming up and logging a user in. Three dispatchers unless a
//! test says otherwise, so the entities of one login hash to different dispatchers.

use std::collections::BTreeMap;
use std::time::Duration;

use goworld_common::id::{dispatcher_for_entity, ClientId, EntityId};
use goworld_common::msgpack::{self, Value};
use goworld_common::proto::{mt, ClientBound, ClientMsg, Msg};
use goworld_common::rng::Rng;
use goworld_game::args;
use goworld_game::prelude::*;
use goworld_tests::sim::{ClientHandle, Sim};
use test_game::{account, avatar};

// ---- helpers --------------------------------------------------------------------------------

/// The value the games' shared KVDB holds for `key`.
fn kvdb_value(sim: &Sim, key: &str) -> Option<String> {
    sim.stores().kvdb.value(key)
}

/// test_game's types.
fn test_game_types() -> Registry {
    let mut types = Registry::new();
    types
        .register::<account::Account>("Account")
        .expect("Account registers");
    types
        .register::<avatar::Avatar>("Avatar")
        .expect("Avatar registers");
    types
}

/// A deployment of test_game with storage and KVDB, up and ready.
fn test_game_up(dispatchers: u16, games: u16, gates: u16) -> Sim {
    let mut sim = Sim::deployment_with_stores(dispatchers, games, gates, test_game_types);
    sim.run_until_idle();
    for g in 1..=games {
        assert!(
            sim.game(g).is_deployment_ready(),
            "game{g} deployment ready"
        );
    }
    sim
}

/// A client's call as the Go client encodes it: every argument a msgpack value.
fn client_call(eid: EntityId, method: &str, args: Vec<Vec<u8>>) -> Vec<u8> {
    Msg::CallEntityMethodFromClient {
        eid,
        method: method.to_string(),
        args,
        client_id: None,
    }
    .to_payload()
}

fn str_arg(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    msgpack::write_str(&mut out, s);
    out
}

/// `Login(user, "123456")` to the client's current player (its Account).
fn send_login(sim: &mut Sim, c: ClientHandle, user: &str) {
    let view = ClientView::of(sim, c);
    let (account, ty) = view.player.clone().expect("the client has its Account");
    assert_eq!(ty, "Account");
    sim.client_send(
        c,
        &client_call(account, "Login", vec![str_arg(user), str_arg("123456")]),
    );
}

/// Connects clients to gate 1 until one has its boot entity on game `g` (the others stay).
fn connect_on(sim: &mut Sim, g: u16) -> (ClientHandle, EntityId) {
    for _ in 0..10 {
        let (c, boot, on) = connect(sim, 1);
        if on == g {
            return (c, boot);
        }
    }
    panic!("no boot entity landed on game{g}");
}

/// The client's player is an Avatar.
fn has_avatar(sim: &Sim, c: ClientHandle) -> bool {
    ClientView::of(sim, c)
        .player
        .is_some_and(|(_, ty)| ty == "Avatar")
}

/// Connects a client to `gate` and waits for its Account; returns the client, its Account and
/// the game the Account is on.
fn connect(sim: &mut Sim, gate: u16) -> (ClientHandle, EntityId, u16) {
    let c = sim.connect_client(gate);
    sim.run_until("boot entity", |s| s.client_player(c).is_some());
    let (account, ty) = sim.client_player(c).unwrap();
    assert_eq!(ty, "Account");
    let games = sim.deployment_size().1;
    let g = (1..=games)
        .find(|&g| sim.game(g).world().exists(&account))
        .expect("the Account is on a game");
    (c, account, g)
}

/// The ID the gate gave client `c`, from the header of what it received.
fn client_id_of(sim: &Sim, c: ClientHandle) -> ClientId {
    match sim.client_messages(c).first() {
        Some(ClientBound::Entity { client_id, .. }) => *client_id,
        other => panic!("no entity message yet: {other:?}"),
    }
}

/// Where entity `eid` lives, per the games' worlds.
fn game_of(sim: &Sim, eid: &EntityId) -> Option<u16> {
    let games = sim.deployment_size().1;
    (1..=games).find(|&g| sim.game(g).world().exists(eid))
}

/// Every `(game, entity, type)` whose client is `cid`.
fn owners_of(sim: &Sim, cid: ClientId) -> Vec<(u16, EntityId, String)> {
    let games = sim.deployment_size().1;
    let mut out = Vec::new();
    for g in 1..=games {
        let w = sim.game(g).world();
        for id in w.ids() {
            if w.client_of(id).is_some_and(|gc| gc.client_id == cid) {
                out.push((g, *id, w.type_of(id).unwrap_or("?").to_string()));
            }
        }
    }
    out
}

/// Entities of type `ty` on any game.
fn entities_of_type(sim: &Sim, ty: &str) -> Vec<(u16, EntityId)> {
    let games = sim.deployment_size().1;
    let mut out = Vec::new();
    for g in 1..=games {
        let w = sim.game(g).world();
        out.extend(
            w.ids()
                .filter(|id| w.type_of(id) == Some(ty))
                .map(|id| (g, *id)),
        );
    }
    out
}

fn decode(bytes: &[u8]) -> Value {
    msgpack::decode_exact(bytes).unwrap_or_else(|e| panic!("bad msgpack {bytes:02x?}: {e}"))
}

fn int_list(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| x.as_i64().unwrap_or_else(|| panic!("not an int: {x:?}")))
        .collect()
}

// ---- the client's side ----------------------------------------------------------------------

/// A client method call as the client saw it, with the calling entity's attributes at that
/// moment (what the Go client's method would read).
#[derive(Debug, Clone)]
struct SeenCall {
    eid: EntityId,
    method: String,
    args: Vec<Value>,
    attrs: Value,
}

/// What a Go client would hold after the messages it received, applied in order: its
/// entities with their attributes, its player, the calls it got, and everything it would
/// reject (a message for an entity it does not have, a path that does not exist, a second
/// create of the same entity).
#[derive(Debug, Default)]
struct ClientView {
    entities: BTreeMap<EntityId, (String, Value)>,
    player: Option<(EntityId, String)>,
    calls: Vec<SeenCall>,
    /// (type, entity) of every create and destroy, in order.
    lifecycle: Vec<(u16, String, EntityId)>,
    errors: Vec<String>,
    /// One line per message received, for failure messages.
    summary: Vec<String>,
}

impl ClientView {
    fn of(sim: &Sim, c: ClientHandle) -> ClientView {
        let mut v = ClientView::default();
        for (i, m) in sim.client_messages(c).iter().enumerate() {
            v.summary.push(summarize(m));
            if let Err(e) = v.apply(m) {
                v.errors
                    .push(format!("{} message #{i}: {e}", sim.client_name(c)));
            }
        }
        v
    }

    fn attrs_mut(&mut self, eid: &EntityId, what: &str) -> Result<&mut Value, String> {
        self.entities
            .get_mut(eid)
            .map(|(_, a)| a)
            .ok_or_else(|| format!("{what} for entity {eid:?}, which the client does not have"))
    }

    fn apply(&mut self, m: &ClientBound) -> Result<(), String> {
        let ClientBound::Entity { msg, .. } = m else {
            return Ok(()); // 1501 and 1502 name no entity of the client's
        };
        match msg {
            ClientMsg::CreateEntityOnClient {
                is_player,
                eid,
                type_name,
                client_data,
                ..
            } => {
                if self.entities.contains_key(eid) {
                    return Err(format!("{type_name} {eid:?} created twice"));
                }
                let attrs = decode(client_data);
                if attrs.as_map().is_none() {
                    return Err(format!("client data of {eid:?} is not a map: {attrs:?}"));
                }
                self.entities.insert(*eid, (type_name.clone(), attrs));
                self.lifecycle
                    .push((mt::CREATE_ENTITY_ON_CLIENT, type_name.clone(), *eid));
                if *is_player {
                    self.player = Some((*eid, type_name.clone()));
                }
            }
            ClientMsg::DestroyEntityOnClient { type_name, eid } => {
                if self.entities.remove(eid).is_none() {
                    return Err(format!(
                        "destroy of {type_name} {eid:?}, which it does not have"
                    ));
                }
                self.lifecycle
                    .push((mt::DESTROY_ENTITY_ON_CLIENT, type_name.clone(), *eid));
                if self.player.as_ref().is_some_and(|(p, _)| p == eid) {
                    self.player = None;
                }
            }
            ClientMsg::NotifyMapAttrChange {
                eid,
                path,
                key,
                val,
            } => {
                let map = container(self.attrs_mut(eid, "map attr change")?, path)?;
                let Value::Map(entries) = map else {
                    return Err(format!("map attr change on a non-map {map:?}"));
                };
                let val = decode(val);
                match entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
                    Some((_, v)) => *v = val,
                    None => entries.push((Value::Str(key.clone()), val)),
                }
            }
            ClientMsg::NotifyMapAttrDel { eid, path, key } => {
                let map = container(self.attrs_mut(eid, "map attr del")?, path)?;
                let Value::Map(entries) = map else {
                    return Err(format!("map attr del on a non-map {map:?}"));
                };
                entries.retain(|(k, _)| k.as_str() != Some(key));
            }
            ClientMsg::NotifyMapAttrClear { eid, path } => {
                let map = container(self.attrs_mut(eid, "map attr clear")?, path)?;
                let Value::Map(entries) = map else {
                    return Err(format!("map attr clear on a non-map {map:?}"));
                };
                entries.clear();
            }
            ClientMsg::NotifyListAttrChange {
                eid,
                path,
                index,
                val,
            } => {
                let list = container(self.attrs_mut(eid, "list attr change")?, path)?;
                let Value::Array(items) = list else {
                    return Err(format!("list attr change on a non-list {list:?}"));
                };
                let slot = items
                    .get_mut(*index as usize)
                    .ok_or_else(|| format!("list attr change at {index}, out of range"))?;
                *slot = decode(val);
            }
            ClientMsg::NotifyListAttrPop { eid, path } => {
                let list = container(self.attrs_mut(eid, "list attr pop")?, path)?;
                let Value::Array(items) = list else {
                    return Err(format!("list attr pop on a non-list {list:?}"));
                };
                items
                    .pop()
                    .ok_or_else(|| "list attr pop on an empty list".to_string())?;
            }
            ClientMsg::NotifyListAttrAppend { eid, path, val } => {
                let list = container(self.attrs_mut(eid, "list attr append")?, path)?;
                let Value::Array(items) = list else {
                    return Err(format!("list attr append on a non-list {list:?}"));
                };
                items.push(decode(val));
            }
            ClientMsg::CallEntityMethodOnClient { eid, method, args } => {
                let attrs = self.attrs_mut(eid, &format!("call {method}"))?.clone();
                self.calls.push(SeenCall {
                    eid: *eid,
                    method: method.clone(),
                    args: args.iter().map(|a| decode(a)).collect(),
                    attrs,
                });
            }
            ClientMsg::SetClientProxyFilterProp { .. } | ClientMsg::ClearClientProxyFilterProps => {
                return Err("the gate passed a filter-prop message on".to_string());
            }
            #[allow(unreachable_patterns)]
            other => return Err(format!("a message this view does not model: {other:?}")),
        }
        Ok(())
    }

    fn calls_named(&self, method: &str) -> Vec<&SeenCall> {
        self.calls.iter().filter(|c| c.method == method).collect()
    }
}

/// A message in a few words: its type, entity and method.
fn summarize(m: &ClientBound) -> String {
    let ClientBound::Entity { msg, .. } = m else {
        return format!("{m:?}");
    };
    match msg {
        ClientMsg::CreateEntityOnClient { eid, type_name, .. } => {
            format!("CREATE {type_name} {eid:?}")
        }
        ClientMsg::DestroyEntityOnClient { eid, type_name } => {
            format!("DESTROY {type_name} {eid:?}")
        }
        ClientMsg::CallEntityMethodOnClient { eid, method, .. } => {
            format!("CALL {method} on {eid:?}")
        }
        other => {
            let text = format!("{other:?}");
            text.chars().take(60).collect()
        }
    }
}

/// The container at `path` (raw msgpack: nil for the root, else innermost segment first, as
/// the Go client's `getAttrByPath` walks it from the end).
fn container<'a>(root: &'a mut Value, path: &[u8]) -> Result<&'a mut Value, String> {
    let segs = match decode(path) {
        Value::Nil => return Ok(root),
        Value::Array(segs) => segs,
        other => return Err(format!("attr path is neither nil nor a list: {other:?}")),
    };
    let mut cur = root;
    for seg in segs.iter().rev() {
        cur = match (cur, seg) {
            (Value::Map(entries), Value::Str(k)) => entries
                .iter_mut()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)
                .ok_or_else(|| format!("attr path key {k} missing"))?,
            (Value::Array(items), Value::Int(i)) => items
                .get_mut(*i as usize)
                .ok_or_else(|| format!("attr path index {i} out of range"))?,
            (c, s) => return Err(format!("attr path segment {s:?} into {c:?}")),
        };
    }
    Ok(cur)
}

/// Asserts that client `c` saw nothing a Go client would reject, and returns its view.
fn checked_view(sim: &Sim, c: ClientHandle) -> ClientView {
    let v = ClientView::of(sim, c);
    assert!(
        v.errors.is_empty(),
        "{} received messages out of order or malformed:\n{}\nreceived:\n{}",
        sim.client_name(c),
        v.errors.join("\n"),
        v.summary.join("\n")
    );
    v
}

// ---- 1. a new user ---------------------------------------------------------------------------

#[test]
fn a_new_user_logs_in_and_gets_a_fresh_avatar() {
    let mut sim = test_game_up(3, 1, 1);
    let (c, account, _) = connect(&mut sim, 1);
    let cid = client_id_of(&sim, c);

    send_login(&mut sim, c, "alice");
    sim.run_until("alice's Avatar reaches the client", |s| has_avatar(s, c));
    sim.settle();

    let view = checked_view(&sim, c);
    let (avatar, _) = view.player.clone().unwrap();
    assert_ne!(avatar, account);
    assert_eq!(
        view.lifecycle,
        vec![
            (mt::CREATE_ENTITY_ON_CLIENT, "Account".into(), account),
            (mt::DESTROY_ENTITY_ON_CLIENT, "Account".into(), account),
            (mt::CREATE_ENTITY_ON_CLIENT, "Avatar".into(), avatar),
        ]
    );
    // Exactly: the Account, OnLogin(true) on it, its destroy, the Avatar as player.
    let msgs = sim.client_messages(c);
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    let ClientBound::Entity {
        msg: ClientMsg::CallEntityMethodOnClient { eid, method, args },
        ..
    } = &msgs[1]
    else {
        panic!("second message is not a call: {:?}", msgs[1]);
    };
    assert_eq!((eid, method.as_str()), (&account, "OnLogin"));
    assert_eq!(args, &vec![vec![0xc3]], "OnLogin(true)");
    let ClientBound::Entity {
        msg:
            ClientMsg::CreateEntityOnClient {
                is_player,
                client_data,
                ..
            },
        ..
    } = &msgs[3]
    else {
        panic!("fourth message is not a create: {:?}", msgs[3]);
    };
    assert!(is_player);

    // The Avatar's client data: its Client and AllClients attributes, with GoWorld's encoding.
    let data = decode(client_data);
    let mut keys: Vec<&str> = data
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["exp", "level", "mails", "name", "prof", "testListField"]
    );
    assert_eq!(data.map_get("name"), Some(&Value::Str("无名".into())));
    assert_eq!(data.map_get("level"), Some(&Value::Int(1)));
    assert_eq!(data.map_get("exp"), Some(&Value::Int(0)));
    let prof = data.map_get("prof").and_then(Value::as_i64).unwrap();
    assert!((1..=4).contains(&prof), "prof {prof}");
    assert_eq!(data.map_get("mails"), Some(&Value::Map(vec![])));
    assert_eq!(data.map_get("testListField"), Some(&Value::Array(vec![])));
    let level_wire = [&[0xa5][..], b"level", &[0xd3, 0, 0, 0, 0, 0, 0, 0, 1]].concat();
    assert!(
        client_data
            .windows(level_wire.len())
            .any(|w| w == level_wire),
        "level is an int64 (0xd3) on the wire: {client_data:02x?}"
    );
    let empty_map = [&[0xa5][..], b"mails", &[0x80]].concat();
    assert!(client_data.windows(empty_map.len()).any(|w| w == empty_map));

    // The game: the Account is gone, the Avatar has the client; the dispatchers agree.
    let world = sim.game(1).world();
    assert!(!world.exists(&account), "the Account was destroyed");
    assert_eq!(world.type_of(&avatar), Some("Avatar"));
    let gc = world.client_of(&avatar).expect("the Avatar has the client");
    assert_eq!((gc.client_id, gc.gate_id), (cid, 1));
    assert_eq!(owners_of(&sim, cid).len(), 1);
    assert_eq!(
        sim.dispatcher(dispatcher_for_entity(&account, 3))
            .entity_game(&account),
        None
    );
    assert_eq!(
        sim.dispatcher(dispatcher_for_entity(&avatar, 3))
            .entity_game(&avatar),
        Some(1)
    );
    // The KVDB maps the user to the Avatar (the put has no callback; it was answered in the
    // settled run).
    assert_eq!(
        kvdb_value(&sim, "alice").as_deref(),
        Some(avatar.to_text().as_str()),
        "the KVDB maps alice to her Avatar"
    );
}

// ---- 2. a returning user ---------------------------------------------------------------------

/// Logs a new user in on client `c` and returns the Avatar; then the client leaves and the
/// test waits until the Avatar is destroyed, saved and forgotten by its dispatcher.
fn first_login_then_leave(sim: &mut Sim, c: ClientHandle, user: &str) -> (EntityId, i64, i64) {
    send_login(sim, c, user);
    sim.run_until("first login", |s| has_avatar(s, c));
    let (avatar, _) = ClientView::of(sim, c).player.unwrap();
    let g = game_of(sim, &avatar).unwrap();
    let attrs = sim.game(g).world().attrs(&avatar).unwrap().as_map();
    let (prof, kind) = (attrs.get_int("prof"), attrs.get_int("spaceKind"));
    sim.client_close(c);
    let d = dispatcher_for_entity(&avatar, sim.deployment_size().0);
    sim.run_until("the Avatar is saved and forgotten", |s| {
        game_of(s, &avatar).is_none() && s.dispatcher(d).entity_game(&avatar).is_none()
    });
    (avatar, prof, kind)
}

#[test]
fn a_returning_user_gets_the_same_avatar_back_from_storage() {
    let mut sim = test_game_up(3, 1, 1);
    let (c1, _, _) = connect(&mut sim, 1);
    let (avatar, prof, kind) = first_login_then_leave(&mut sim, c1, "bob");
    // The dispatcher forgot the Avatar only once its last save was written.

    let (c2, account, _) = connect(&mut sim, 1);
    let cid = client_id_of(&sim, c2);
    send_login(&mut sim, c2, "bob");
    sim.run_until("bob's Avatar is back", |s| has_avatar(s, c2));
    sim.settle();

    let view = checked_view(&sim, c2);
    assert_eq!(
        view.player,
        Some((avatar, "Avatar".to_string())),
        "same Avatar ID"
    );
    assert_eq!(
        view.lifecycle,
        vec![
            (mt::CREATE_ENTITY_ON_CLIENT, "Account".into(), account),
            (mt::DESTROY_ENTITY_ON_CLIENT, "Account".into(), account),
            (mt::CREATE_ENTITY_ON_CLIENT, "Avatar".into(), avatar),
        ]
    );
    let (_, data) = &view.entities[&avatar];
    assert_eq!(data.map_get("prof"), Some(&Value::Int(prof)), "loaded prof");
    assert_eq!(data.map_get("level"), Some(&Value::Int(1)));
    let w = sim.game(1).world();
    assert_eq!(
        w.attrs(&avatar).unwrap().as_map().get_int("spaceKind"),
        kind,
        "the server-only persistent spaceKind was loaded, not re-rolled"
    );
    assert!(!w.exists(&account));
    assert_eq!(w.client_of(&avatar).map(|gc| gc.client_id), Some(cid));
    assert_eq!(entities_of_type(&sim, "Avatar"), vec![(1, avatar)]);
}

/// With two games the returning user's Avatar loads on the least loaded game, which need not
/// be the Account's. Then the Account moves to the Avatar's game (it enters the Avatar's
/// space, here that game's nil space) and hands the client over there; the client stays
/// connected throughout and ends up with its Avatar, wherever each one started.
#[test]
fn a_returning_user_on_two_games_gets_the_avatar_wherever_it_loads() {
    let mut sim = test_game_up(3, 2, 1);
    let (c1, _, _) = connect(&mut sim, 1);
    let (avatar, _, _) = first_login_then_leave(&mut sim, c1, "carol");

    for (round, account_game) in [(1, 2u16), (2, 1), (3, 2)] {
        let (c, account) = connect_on(&mut sim, account_game);
        send_login(&mut sim, c, "carol");
        sim.run_until("carol's Avatar reaches the client", |s| has_avatar(s, c));
        sim.settle();
        let loaded_on = game_of(&sim, &avatar).expect("the Avatar lives somewhere");
        eprintln!("round {round}: Account on game{account_game}, Avatar on game{loaded_on}");
        let view = checked_view(&sim, c);
        assert_eq!(view.player, Some((avatar, "Avatar".into())));
        assert!(game_of(&sim, &account).is_none(), "the Account is gone");
        assert_eq!(
            sim.game(loaded_on)
                .world()
                .client_of(&avatar)
                .map(|gc| gc.client_id),
            Some(client_id_of(&sim, c))
        );
        assert_eq!(entities_of_type(&sim, "Avatar"), vec![(loaded_on, avatar)]);
        assert!(!sim.client_closed(c));
        // Leave, so the next round loads the Avatar again.
        sim.client_close(c);
        sim.run_until("carol's Avatar is gone", |s| game_of(s, &avatar).is_none());
        sim.settle();
    }
}

// ---- 3. GiveClientTo and per-client ordering ---------------------------------------------------

/// Random latencies on every game↔dispatcher and gate↔dispatcher link, so frames through
/// different dispatchers overtake each other whenever the engine lets them.
fn random_latencies(sim: &mut Sim, seed: u64, max_ms: u64) {
    let mut rng = Rng::new(seed);
    let (d, g, t) = sim.deployment_size();
    let nodes: Vec<String> = (1..=g)
        .map(|g| format!("game{g}"))
        .chain((1..=t).map(|t| format!("gate{t}")))
        .collect();
    for n in &nodes {
        for d in 1..=d {
            let ms = rng.below(max_ms + 1);
            sim.set_latency(n, &format!("dispatcher{d}"), Duration::from_millis(ms));
        }
    }
}

/// Checks the calls the client saw against its mirror of the Avatar, as the Go bot does.
fn check_test_rpcs(name: &str, view: &ClientView, avatar: EntityId) -> (usize, usize) {
    let lists = view.calls_named("OnTestListField");
    for call in &lists {
        assert_eq!(call.eid, avatar);
        let mirror = call
            .attrs
            .map_get("testListField")
            .unwrap_or_else(|| panic!("{name}: no testListField on the client"));
        assert_eq!(
            int_list(mirror),
            int_list(&call.args[0]),
            "{name}: the client's testListField matches OnTestListField's argument"
        );
    }
    let step1 = view.calls_named("OnTestComplexAttrStep1");
    let expected = Value::Map(vec![(
        Value::Str("key1".into()),
        Value::Map(vec![(
            Value::Str("key2".into()),
            Value::Array(vec![
                Value::Bool(true),
                Value::Array(vec![Value::Map(vec![(
                    Value::Str("finalkey".into()),
                    Value::Str("iamhere".into()),
                )])]),
            ]),
        )]),
    )]);
    for call in &step1 {
        assert_eq!(
            call.attrs.map_get("complexAttr"),
            Some(&expected),
            "{name}: complexAttr after step 1"
        );
    }
    let clear = view.calls_named("OnTestComplexAttrClear");
    assert_eq!(clear.len(), step1.len());
    for call in &clear {
        assert_eq!(
            call.attrs.map_get("complexAttr"),
            Some(&Value::Map(vec![])),
            "{name}: complexAttr after clear"
        );
    }
    (lists.len(), step1.len())
}

/// Twenty clients log in, then call the Avatar's test RPCs with random latencies on every
/// dispatcher link: what each client receives is in an order a Go client accepts, and its
/// mirror of the Avatar matches what the Avatar says. The logins run without latency: with
/// latency they hit the race of
/// [`logins_whose_kvdb_answers_at_once_still_reach_clients_in_order`].
#[test]
fn twenty_clients_test_rpcs_reach_clients_in_an_order_a_go_client_accepts() {
    const CLIENTS: usize = 20;
    const LIST_CALLS: usize = 8;
    const COMPLEX_CALLS: usize = 3;
    let mut sim = test_game_up(3, 2, 2);

    let clients: Vec<ClientHandle> = (0..CLIENTS)
        .map(|i| sim.connect_client(1 + (i % 2) as u16))
        .collect();
    sim.run_until("every client has its Account", |s| {
        clients.iter().all(|&c| s.client_player(c).is_some())
    });
    for (i, &c) in clients.iter().enumerate() {
        send_login(&mut sim, c, &format!("user{i}"));
    }
    sim.run_until("every client has its Avatar", |s| {
        clients.iter().all(|&c| has_avatar(s, c))
    });
    sim.run_until("every user is in the KVDB", |s| {
        (0..CLIENTS).all(|i| kvdb_value(s, &format!("user{i}")).is_some())
    });
    random_latencies(&mut sim, 7, 15);
    // The test RPCs, interleaved across clients, several in flight per client.
    for round in 0..LIST_CALLS {
        for &c in &clients {
            let (avatar, _) = ClientView::of(&sim, c).player.unwrap();
            sim.client_send(c, &client_call(avatar, "TestListField", vec![]));
            if round < COMPLEX_CALLS {
                sim.client_send(c, &client_call(avatar, "TestComplexAttr", vec![]));
            }
        }
        sim.advance(Duration::from_millis(3));
    }
    sim.settle();

    let mut games_used = [0usize; 2];
    for &c in &clients {
        let name = sim.client_name(c).to_string();
        let view = checked_view(&sim, c);
        let (avatar, ty) = view.player.clone().unwrap();
        assert_eq!(ty, "Avatar", "{name}");
        assert_eq!(view.lifecycle.len(), 3, "{name}: {:?}", view.lifecycle);
        assert_eq!(view.calls_named("OnLogin").len(), 1, "{name}");
        assert_eq!(
            check_test_rpcs(&name, &view, avatar),
            (LIST_CALLS, COMPLEX_CALLS),
            "{name}: every call answered"
        );
        // The mirror ends equal to the server's attributes.
        let g = game_of(&sim, &avatar).unwrap();
        games_used[usize::from(g - 1)] += 1;
        let server = sim.game(g).world().attrs(&avatar).unwrap().as_map();
        let server_list = server.get_list("testListField").unwrap().to_value();
        assert_eq!(
            view.entities[&avatar].1.map_get("testListField"),
            Some(&server_list),
            "{name}: testListField mirror"
        );
        assert_eq!(
            owners_of(&sim, client_id_of(&sim, c)),
            vec![(g, avatar, "Avatar".to_string())]
        );
    }
    assert!(
        games_used.iter().all(|&n| n > 0),
        "Avatars on both games: {games_used:?}"
    );
}

/// The hardest case for the order across dispatchers: each KVDB answer is picked up at the
/// instant the Login arrived, while `OnLogin(true)` (sent through the Account's dispatcher)
/// is still on its way; the destroy of the Account and the create of the Avatar go through the
/// Avatar's dispatcher, which may be faster. A Go client drops a call for an entity it no
/// longer has, so OnLogin must arrive before the Account's destroy.
///
/// Regression: messages to a client used to travel through the dispatcher of the client's
/// owner *at the time they were sent* (as in GoWorld, whose `GameClient.selectDispatcher`
/// routes by owner), so after GiveClientTo the Avatar's create and the Account's destroy could
/// overtake a call the Account made just before (here `OnLogin(true)`); seen with seed 1 as
/// `CREATE Account, DESTROY Account, CREATE Avatar, CALL OnLogin on <the Account>`. Now every
/// message for a client takes the dispatcher chosen by the client's ID.
#[test]
fn logins_whose_kvdb_answers_at_once_still_reach_clients_in_order() {
    const CLIENTS: usize = 6;
    for seed in 1..=4 {
        let mut sim = test_game_up(3, 2, 1);
        random_latencies(&mut sim, seed, 20);
        sim.set_tracing(true);
        let clients: Vec<(ClientHandle, EntityId)> = (0..CLIENTS)
            .map(|_| {
                let (c, account, _) = connect(&mut sim, 1);
                (c, account)
            })
            .collect();
        for (i, &(c, account)) in clients.iter().enumerate() {
            let cid = client_id_of(&sim, c);
            send_login(&mut sim, c, &format!("seed{seed}-user{i}"));
            sim.run_until("the Login reaches the Account's game", |s| {
                s.trace().iter().any(|d| {
                    d.to.starts_with("game")
                        && matches!(
                            Msg::decode(&d.payload),
                            Ok(Msg::CallEntityMethodFromClient { eid, ref method, .. })
                                if eid == account && method == "Login"
                        )
                })
            });
            sim.wait_in_place("the game hands the client to a new Avatar", |s| {
                owners_of(s, cid).iter().any(|(_, _, ty)| ty == "Avatar")
            });
        }
        sim.run_until("every client has its Avatar", |s| {
            clients.iter().all(|&(c, _)| has_avatar(s, c))
        });
        sim.run_until("every user is in the KVDB", |s| {
            (0..CLIENTS).all(|i| kvdb_value(s, &format!("seed{seed}-user{i}")).is_some())
        });
        sim.settle();
        for &(c, account) in &clients {
            let view = checked_view(&sim, c);
            let login = view.calls_named("OnLogin");
            assert_eq!(login.len(), 1, "seed {seed}: {}", sim.client_name(c));
            assert_eq!(login[0].eid, account);
            assert_eq!(login[0].args, vec![Value::Bool(true)]);
        }
    }
}

// ---- 4. a client leaving in the middle of GiveClientTo ------------------------------------------

/// Asserts that no entity on any game keeps a client that is gone.
fn assert_no_owner(sim: &Sim, cid: ClientId, what: &str) {
    let owners = owners_of(sim, cid);
    assert!(
        owners.is_empty(),
        "{what}: entities keep the departed client {cid:?}: {owners:?}"
    );
}

/// The client leaves right after Login: the gate's NOTIFY_CLIENT_DISCONNECTED follows the
/// Login on the same links, so the Account is destroyed before the KVDB answers and no Avatar
/// is made. Another client logging in meanwhile is not disturbed.
#[test]
fn a_client_leaving_right_after_login_leaves_no_entity_with_its_client() {
    let mut sim = test_game_up(3, 1, 1);
    for d in 1..=3 {
        sim.set_latency(
            "gate1",
            &format!("dispatcher{d}"),
            Duration::from_millis(20),
        );
    }
    let (stays, _, _) = connect(&mut sim, 1);
    let (c, _, _) = connect(&mut sim, 1);
    let cid = client_id_of(&sim, c);
    send_login(&mut sim, stays, "stays");
    send_login(&mut sim, c, "leaves");
    sim.client_close(c);
    sim.run_until("the staying client gets its Avatar", |s| {
        has_avatar(s, stays)
    });
    sim.settle();

    assert_no_owner(&sim, cid, "closed right after Login");
    assert_eq!(sim.gate(1).client_count(), 1);
    let avatars = entities_of_type(&sim, "Avatar");
    assert_eq!(
        avatars.len(),
        1,
        "only the staying client's Avatar: {avatars:?}"
    );
    assert_eq!(
        ClientView::of(&sim, stays).player.map(|(e, _)| e),
        Some(avatars[0].1)
    );
    assert!(entities_of_type(&sim, "Account").is_empty());
}

/// The client leaves after the game gave it to the new Avatar but before the Avatar's create
/// reached the gate: the gate tells the new owner (NOTIFY_CLIENT_DISCONNECTED when the create
/// for a departed client arrives), and the Avatar destroys itself.
#[test]
fn a_client_leaving_while_its_avatar_is_on_the_way_leaves_no_entity_with_its_client() {
    let mut sim = test_game_up(3, 2, 1);
    // The gate is far from the dispatchers: the Avatar's create is in flight for 20 ms after
    // the game handed the client over.
    for d in 1..=3 {
        sim.set_latency(
            "gate1",
            &format!("dispatcher{d}"),
            Duration::from_millis(20),
        );
    }
    let (c, account, g) = connect(&mut sim, 1);
    let cid = client_id_of(&sim, c);
    send_login(&mut sim, c, "dave");
    sim.run_until("the game gave the client to the Avatar", |s| {
        entities_of_type(s, "Avatar")
            .iter()
            .any(|(g, a)| s.game(*g).world().client_of(a).is_some())
    });
    let (_, avatar) = entities_of_type(&sim, "Avatar")[0];
    assert_eq!(game_of(&sim, &avatar), Some(g));
    assert!(game_of(&sim, &account).is_none(), "the Account is gone");
    assert!(
        !has_avatar(&sim, c),
        "the create has not reached the client yet"
    );
    sim.client_close(c);
    let d = dispatcher_for_entity(&avatar, 3);
    sim.run_until("the orphaned Avatar is destroyed and forgotten", |s| {
        game_of(s, &avatar).is_none() && s.dispatcher(d).entity_game(&avatar).is_none()
    });
    sim.settle();

    assert_no_owner(&sim, cid, "closed while the Avatar's create was in flight");
    assert_eq!(sim.gate(1).client_count(), 0);
    assert!(entities_of_type(&sim, "Avatar").is_empty());
    assert!(entities_of_type(&sim, "Account").is_empty());
    // The client saw its Account and OnLogin, nothing after it left.
    let view = checked_view(&sim, c);
    assert_eq!(view.lifecycle.len(), 1);

    // The user logs in again later and gets the same Avatar, loaded from storage.
    let (c2, _, g2) = connect(&mut sim, 1);
    send_login(&mut sim, c2, "dave");
    sim.run_until("dave's Avatar loads", |s| game_of(s, &avatar).is_some());
    sim.settle();
    if game_of(&sim, &avatar) == Some(g2) {
        assert_eq!(
            ClientView::of(&sim, c2).player,
            Some((avatar, "Avatar".into()))
        );
    }
}

// ---- 5. calls between games ---------------------------------------------------------------------

/// Boot entity of the call tests: spawns entities on its game and starts pings for its client.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Lobby;

impl Entity for Lobby {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("Spawn", Expose::OwnClient, Lobby::spawn)
            .method("StartPing", Expose::OwnClient, Lobby::start_ping)
            .method("Done", Expose::Server, Lobby::done);
    }
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        ctx.destroy();
    }
}

impl Lobby {
    fn spawn(&mut self, ctx: &mut Ctx, (type_name,): (String,)) {
        let id = ctx.create_entity_locally(&type_name);
        ctx.call_client("OnSpawned", args![id, i64::from(ctx.game_id())]);
    }

    fn start_ping(&mut self, ctx: &mut Ctx, (pinger, ponger, n): (EntityId, EntityId, i64)) {
        ctx.call(pinger, "Start", args![ponger, n, ctx.id()]);
    }

    fn done(&mut self, ctx: &mut Ctx, (seqs, games): (Vec<i64>, Vec<i64>)) {
        ctx.call_client("OnPongs", args![seqs, games]);
    }
}

/// Pings a Ponger `n` times and reports the answers, in arrival order, to its lobby.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Pinger {
    lobby: Option<EntityId>,
    expected: usize,
    seqs: Vec<i64>,
    games: Vec<i64>,
}

impl Entity for Pinger {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::server("pongs"))
            .method("Start", Expose::Server, Pinger::start)
            .method("Pong", Expose::Server, Pinger::pong);
    }
}

impl Pinger {
    fn start(&mut self, ctx: &mut Ctx, (ponger, n, lobby): (EntityId, i64, EntityId)) {
        self.lobby = Some(lobby);
        self.expected = n as usize;
        for seq in 0..n {
            ctx.call(
                ponger,
                "Ping",
                args![ctx.id(), seq, i64::from(ctx.game_id())],
            );
        }
    }

    fn pong(&mut self, ctx: &mut Ctx, (seq, game): (i64, i64)) {
        self.seqs.push(seq);
        self.games.push(game);
        ctx.attrs.root().set_int("pongs", self.seqs.len() as i64);
        if self.seqs.len() == self.expected {
            if let Some(lobby) = self.lobby {
                ctx.call(lobby, "Done", args![self.seqs, self.games]);
            }
        }
    }
}

/// Answers every Ping with a Pong naming its game.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Ponger;

impl Entity for Ponger {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(Attr::<i64>::server("pings"))
            .method("Ping", Expose::Server, Ponger::ping);
    }
}

impl Ponger {
    fn ping(&mut self, ctx: &mut Ctx, (from, seq, from_game): (EntityId, i64, i64)) {
        let pings = ctx.attrs.as_map().get_int("pings");
        ctx.attrs.root().set_int("pings", pings + 1);
        ctx.attrs.root().set_int("fromGame", from_game);
        ctx.call(from, "Pong", args![seq, i64::from(ctx.game_id())]);
    }
}

fn ping_types() -> Registry {
    let mut types = Registry::new();
    types.register::<Lobby>("Account").expect("Lobby registers");
    types
        .register::<Pinger>("Pinger")
        .expect("Pinger registers");
    types
        .register::<Ponger>("Ponger")
        .expect("Ponger registers");
    types
}

/// The client's lobby spawns `type_name`; returns its ID and game.
fn spawn(sim: &mut Sim, c: ClientHandle, lobby: EntityId, type_name: &str) -> (EntityId, i64) {
    let before = ClientView::of(sim, c).calls_named("OnSpawned").len();
    sim.client_send(c, &client_call(lobby, "Spawn", vec![str_arg(type_name)]));
    sim.run_until("OnSpawned", |s| {
        ClientView::of(s, c).calls_named("OnSpawned").len() > before
    });
    let view = ClientView::of(sim, c);
    let call = view.calls_named("OnSpawned")[before];
    let id = EntityId::parse(call.args[0].as_str().unwrap()).unwrap();
    (id, call.args[1].as_i64().unwrap())
}

#[test]
fn an_entity_calls_an_entity_on_another_game_and_gets_the_replies_in_order() {
    const PINGS: i64 = 10;
    let mut sim = Sim::deployment_with_types(3, 2, 1, ping_types);
    sim.run_until_idle();
    random_latencies(&mut sim, 11, 12);
    let (c1, lobby1) = connect_on(&mut sim, 1);
    let (c2, lobby2) = connect_on(&mut sim, 2);
    let (pinger, pinger_game) = spawn(&mut sim, c1, lobby1, "Pinger");
    let (ponger, ponger_game) = spawn(&mut sim, c2, lobby2, "Ponger");
    assert_eq!((pinger_game, ponger_game), (1, 2));
    assert!(sim.game(1).world().exists(&pinger));
    assert!(sim.game(2).world().exists(&ponger));

    sim.set_tracing(true);
    let mut n = Vec::new();
    msgpack::write_int(&mut n, PINGS);
    let mut ids = Vec::new();
    for id in [pinger, ponger] {
        ids.push(str_arg(&id.to_text()));
    }
    ids.push(n);
    sim.client_send(c1, &client_call(lobby1, "StartPing", ids));
    sim.run_until("OnPongs", |s| {
        !ClientView::of(s, c1).calls_named("OnPongs").is_empty()
    });
    sim.run_until_idle();

    let view = checked_view(&sim, c1);
    let pongs = view.calls_named("OnPongs");
    assert_eq!(pongs.len(), 1);
    assert_eq!(
        int_list(&pongs[0].args[0]),
        (0..PINGS).collect::<Vec<_>>(),
        "replies in call order"
    );
    assert_eq!(int_list(&pongs[0].args[1]), vec![2; PINGS as usize]);
    let pinger_attrs = sim.game(1).world().attrs(&pinger).unwrap().as_map();
    assert_eq!(pinger_attrs.get_int("pongs"), PINGS);
    let ponger_attrs = sim.game(2).world().attrs(&ponger).unwrap().as_map();
    assert_eq!(ponger_attrs.get_int("pings"), PINGS);
    assert_eq!(ponger_attrs.get_int("fromGame"), 1);

    // Pings went game1 → the Ponger's dispatcher → game2, Pongs game2 → the Pinger's → game1.
    let mut hops: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for d in sim.take_trace() {
        if let Ok(Msg::CallEntityMethod { method, .. }) = Msg::decode(&d.payload) {
            *hops.entry((method, d.from, d.to)).or_default() += 1;
        }
    }
    let to_ponger = format!("dispatcher{}", dispatcher_for_entity(&ponger, 3));
    let to_pinger = format!("dispatcher{}", dispatcher_for_entity(&pinger, 3));
    let p = PINGS as usize;
    for (method, from, to) in [
        ("Ping", "game1", to_ponger.as_str()),
        ("Ping", to_ponger.as_str(), "game2"),
        ("Pong", "game2", to_pinger.as_str()),
        ("Pong", to_pinger.as_str(), "game1"),
    ] {
        assert_eq!(
            hops.get(&(method.to_string(), from.to_string(), to.to_string())),
            Some(&p),
            "{method} {from}→{to}; all hops: {hops:?}"
        );
    }
    // The Done call and the client's answer stayed on game1.
    assert!(!hops.keys().any(|(m, _, _)| m == "Done" || m == "Start"));
}

// ---- 6. storage and the KVDB in simulated time ------------------------------------------------

/// Store results come back on the fake clock, `set_store_latency` after the request: a login
/// (a KVDB read, then the Avatar) takes at least that much simulated time, and no real time.
#[test]
fn store_results_arrive_on_the_fake_clock_after_the_store_latency() {
    const LATENCY: Duration = Duration::from_millis(40);
    let mut sim = test_game_up(3, 1, 1);
    let (c, _, _) = connect(&mut sim, 1);
    sim.set_store_latency(LATENCY);
    send_login(&mut sim, c, "frank");
    let sent_at = sim.elapsed();
    sim.run_until("frank's Avatar reaches the client", |s| has_avatar(s, c));
    let took = sim.elapsed() - sent_at;
    assert!(
        took >= LATENCY,
        "the KVDB read took {took:?} of simulated time"
    );
    sim.settle();
    let (avatar, _) = ClientView::of(&sim, c).player.unwrap();
    assert_eq!(
        kvdb_value(&sim, "frank").as_deref(),
        Some(avatar.to_text().as_str())
    );
    assert!(
        sim.stores().storage.saved("Avatar", &avatar).is_some(),
        "a new Avatar is saved at once"
    );
}

/// The games share one store, which outlives them: a game killed and started again finds
/// the Avatar it saved, and the user gets it back.
#[test]
fn a_game_restarted_in_the_sim_finds_what_it_saved() {
    let mut sim = test_game_up(3, 1, 1);
    let (c1, _, _) = connect(&mut sim, 1);
    let (avatar, prof, kind) = first_login_then_leave(&mut sim, c1, "gina");
    sim.kill("game1");
    sim.run_until_idle();
    sim.restart_fresh("game1");
    sim.run_until_idle();
    let (c2, _, _) = connect(&mut sim, 1);
    send_login(&mut sim, c2, "gina");
    sim.run_until("gina's Avatar is back", |s| has_avatar(s, c2));
    sim.settle();
    assert_eq!(
        ClientView::of(&sim, c2).player,
        Some((avatar, "Avatar".into()))
    );
    let attrs = sim.game(1).world().attrs(&avatar).unwrap().as_map();
    assert_eq!(
        (attrs.get_int("prof"), attrs.get_int("spaceKind")),
        (prof, kind)
    );
}

/// SIGTERM in the sim: the game destroys its entities and stays up, in simulated time,
/// until storage has answered their last saves; only then does the dispatcher hear that the
/// Avatar is gone, and the game stops.
#[test]
fn sigterm_in_the_sim_stops_a_game_once_its_last_saves_are_answered() {
    const LATENCY: Duration = Duration::from_millis(30);
    let mut sim = test_game_up(3, 1, 1);
    let (c, _, _) = connect(&mut sim, 1);
    send_login(&mut sim, c, "hank");
    sim.run_until("hank's Avatar", |s| has_avatar(s, c));
    sim.settle();
    let (avatar, _) = ClientView::of(&sim, c).player.unwrap();
    let prof = sim
        .game(1)
        .world()
        .attrs(&avatar)
        .unwrap()
        .as_map()
        .get_int("prof");
    sim.set_store_latency(LATENCY);
    sim.set_tracing(true);
    let at = sim.elapsed();
    sim.signal("game1", goworld_common::sig::SIGTERM);
    assert!(
        sim.is_running("game1"),
        "it waits for the Avatar's last save"
    );
    sim.run_until("game1 stops", |s| !s.is_running("game1"));
    assert!(sim.elapsed() - at >= LATENCY);
    let saved = sim.stores().storage.saved("Avatar", &avatar).unwrap();
    let attrs = goworld_game::attr::Attrs::from_bytes(&saved).unwrap();
    assert_eq!(attrs.as_map().get_int("prof"), prof);
    sim.run_until_idle();
    let gone = sim.trace().iter().any(|d| {
        d.from == "game1"
            && matches!(Msg::decode(&d.payload), Ok(Msg::NotifyDestroyEntity { eid }) if eid == avatar)
    });
    assert!(
        gone,
        "the dispatcher heard the Avatar is gone before the game stopped"
    );
}

/// A hot swap while a login's KVDB read is in flight: the freeze waits (in simulated time)
/// for the answer and for what the answer starts (the new Avatar's save, the KVDB write),
/// then writes the game with the Avatar in it; the restored game carries on.
#[test]
fn a_freeze_in_the_sim_waits_for_the_store_answers_in_flight() {
    const LATENCY: Duration = Duration::from_millis(200);
    let mut sim = test_game_up(3, 1, 1);
    let (c, _, _) = connect(&mut sim, 1);
    sim.set_store_latency(LATENCY);
    send_login(&mut sim, c, "ivy");
    sim.run_until("the Login's KVDB read is in flight", |s| {
        s.game(1).store_requests_in_flight() > 0
    });
    let at = sim.elapsed();
    let frozen = sim.freeze_game(1, false);
    assert!(
        sim.elapsed() - at >= 2 * LATENCY,
        "two rounds of answers: {:?}",
        sim.elapsed() - at
    );
    let avatar = EntityId::parse(&kvdb_value(&sim, "ivy").expect("the KVDB has ivy")).unwrap();
    assert!(sim.stores().storage.saved("Avatar", &avatar).is_some());
    sim.restore_game(1, &frozen);
    sim.run_until("ivy's Avatar reaches the client", |s| has_avatar(s, c));
    sim.settle();
    assert!(
        sim.game(1).world().exists(&avatar),
        "the Avatar was in the file"
    );
    assert_eq!(
        ClientView::of(&sim, c).player,
        Some((avatar, "Avatar".into()))
    );
    assert!(!sim.client_closed(c));
}

// ---- 6. the whole game -----------------------------------------------------------------------

/// Exactly the game the test_game binary runs.
fn whole_test_game() -> Registry {
    test_game::registry().expect("test_game registers")
}

#[test]
fn the_whole_test_game_brings_up_every_service_and_logs_a_user_in() {
    let mut sim = Sim::deployment_with_stores(3, 2, 1, whole_test_game);
    sim.run_until_idle();
    let services = [
        ("OnlineService", 3),
        ("SpaceService", 3),
        ("MailService", 1),
        (test_game::pubsub::SERVICE_NAME, test_game::pubsub::SHARDS),
    ];
    // Games claim services on a timer.
    sim.advance(Duration::from_secs(3));
    sim.run_until("every service has all its shards on both games", |s| {
        services.iter().all(|&(name, shards)| {
            (1..=2)
                .all(|g| (0..shards).all(|i| s.game(g).world().service_entity(name, i).is_some()))
        })
    });
    // Both games agree on every shard, and each shard is one entity, with no strays.
    for (name, shards) in services {
        let mut ids: Vec<EntityId> = (0..shards)
            .map(|i| sim.game(1).world().service_entity(name, i).unwrap())
            .collect();
        let on_game2: Vec<_> = (0..shards)
            .map(|i| sim.game(2).world().service_entity(name, i).unwrap())
            .collect();
        assert_eq!(ids, on_game2, "{name}: the games disagree");
        let mut live: Vec<EntityId> = (entities_of_type(&sim, name).into_iter())
            .map(|(_, id)| id)
            .collect();
        ids.sort();
        live.sort();
        assert_eq!(ids, live, "{name}: shard entities vs live entities");
    }

    let (c, account, _) = connect(&mut sim, 1);
    send_login(&mut sim, c, "alice");
    sim.run_until("alice's Avatar reaches the client", |s| has_avatar(s, c));
    let (avatar, _) = ClientView::of(&sim, c).player.unwrap();
    assert_ne!(avatar, account);
}

#[test]
fn an_avatar_follows_its_clients_position_syncs_only_after_set_client_syncing() {
    use goworld_common::proto::SyncRecord;
    let mut sim = Sim::deployment_with_stores(1, 1, 1, whole_test_game);
    sim.run_until_idle();
    sim.advance(Duration::from_secs(3));
    sim.run_until("SpaceService is up", |s| {
        (0..3).all(|i| {
            (s.game(1).world())
                .service_entity("SpaceService", i)
                .is_some()
        })
    });
    let (c, _, _) = connect(&mut sim, 1);
    send_login(&mut sim, c, "walker");
    sim.run_until("walker's Avatar reaches the client", |s| has_avatar(s, c));
    let (avatar, _) = ClientView::of(&sim, c).player.unwrap();
    sim.run_until("the Avatar is in a space of its kind", |s| {
        let w = s.game(1).world();
        (w.space_of(&avatar)).is_some_and(|sp| w.space_kind(&sp).is_some_and(|k| k != 0))
    });
    let pos = |sim: &Sim| {
        let (p, yaw) = sim.game(1).world().position_of(&avatar).unwrap();
        (p.x, p.y, p.z, yaw)
    };
    let sync = |sim: &mut Sim, x: f32, z: f32| {
        let records = vec![SyncRecord {
            eid: avatar,
            x,
            y: 0.0,
            z,
            yaw: 1.5,
        }];
        sim.client_send(c, &Msg::SyncPositionYawFromClient { records }.to_payload());
        // The gate batches syncs for one interval (100 ms) before it passes them on.
        sim.advance(Duration::from_millis(300));
        sim.settle();
    };
    let start = pos(&sim);
    sync(&mut sim, 401.0, -401.0);
    assert_eq!(
        pos(&sim),
        start,
        "client syncing is off until the client turns it on"
    );

    sim.client_send(
        c,
        &client_call(avatar, "SetClientSyncing", vec![vec![0xc3]]),
    );
    sim.settle();
    sync(&mut sim, 401.0, -401.0);
    assert_eq!(pos(&sim), (401.0, 0.0, -401.0, 1.5));

    sim.client_send(
        c,
        &client_call(avatar, "SetClientSyncing", vec![vec![0xc2]]),
    );
    sim.settle();
    sync(&mut sim, 0.0, 0.0);
    assert_eq!(pos(&sim), (401.0, 0.0, -401.0, 1.5), "off again");
    assert!(!sim.client_closed(c), "no call was refused");
}

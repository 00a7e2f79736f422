//! One bot as a state machine without sockets or clock: the reactor hands it payloads and
//! ticks with the time and the RNG, and sends what it returns. It behaves like GoWorld's
//! `ClientBot.go` / `ClientEntity.go`:
//!
//! * a client-side entity table (type, attribute tree, position and yaw) kept by 1002/1003,
//!   the attribute messages and 1502;
//! * the player (the entity created with isPlayer): an `Account` player is sent
//!   `Login("test<id>", "123456")` at once; an `Avatar` player means the bot is logged in;
//! * the current space: a 1002 of type `__space__` (kind = clientData `_K`), cleared by its
//!   1003; neighbours (Monsters, AOITesters, other Avatars) are ordinary entries of the table;
//! * client methods (1009 on an entity, 1501 on the player) dispatched by name to the
//!   handlers in [`Bot::call_method`];
//! * the thing loop: it starts on the first space the Avatar enters (later spaces complete
//!   `DoEnterRandomSpace`); wait a random 0–6 s, do one [`Thing`] (a server call; forced to
//!   `DoEnterRandomSpace` while the space kind is 0 or there is no space), and wait for the
//!   reply that completes it, 5 s at most; repeat;
//! * position sync: every 100 ms, with probability 0.5, jitter the Avatar and send 12.
//!
//! Everything that GoWorld's client treats as an error (`Errorf`, a thing timeout, a panic
//! in packet handling) is reported as [`Event::Failure`]; the caller decides whether it is
//! fatal (`-strict`).
//!
//! Differences from GoWorld on purpose:
//! * The thing loop starts on the first space entered *while the player is an Avatar*
//!   (GoWorld starts it on the first space whatever the player is, and would never start it
//!   for an Avatar if an Account had entered a space before).
//! * A mismatch found by a thing's check (GoWorld panics in the handler, so the thing later
//!   times out; or, for `OnTestAOI`, reports it and completes the thing) is reported once,
//!   as the mismatch, and ends the thing without counting it as done.
//! * Completions count only on the player (GoWorld: the thing state lives on the player
//!   entity, so a reply on another entity completes nothing).
//! * Attribute updates that GoWorld's client would panic on (a missing path step, a step of
//!   the wrong kind, popping an empty list, an index out of range) are failures here.
//! * A bot with no Avatar, or with an Avatar that has entered no space, 10 s after connecting
//!   is a failure (GoWorld waits forever; without a space it never does a thing).

type HashMap<K, V> = goworld_common::id::FastMap<K, V>;
use std::time::{Duration, Instant};

use goworld_common::msgpack::Value;

use crate::attrs;
use crate::wire::{self, Eid, PathKey, PosYaw, ServerMsg};
use goworld_common::rng::Rng;

/// How long after connecting a bot must have its Avatar in a space.
pub const AVATAR_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest random wait before the next thing (GoWorld: 2 × 3 s average).
pub const THING_DELAY_MAX: Duration = Duration::from_secs(6);
/// Position sync period.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// The password every bot logs in with.
pub const PASSWORD: &str = "123456";
/// The type name of spaces on the client.
pub const SPACE_TYPE: &str = "__space__";
/// The number of bots per space kind for `DoEnterRandomSpace` (kinds 1..=max(2, N/400)).
pub const BOTS_PER_SPACE_KIND: usize = 400;

/// Something a bot does to exercise the server: one request, completed by one reply.
/// To add one: a variant, its entry in [`Thing::ALL`], its name and request, and a call to
/// [`Bot::thing_done`] from the handler of the reply in [`Bot::call_method`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Thing {
    /// `EnterSpace(kind)` with a kind in 1..=max(2, N/400) other than the current one; done by
    /// the next 1002 of a `__space__`. Forced while the space kind is 0 or there is no space.
    EnterRandomSpace,
    /// `EnterRandomNilSpace()` (the server moves the Avatar to the nil space of a random
    /// game, so the client loses its space); done by `OnEnterRandomNilSpace()`.
    EnterRandomNilSpace,
    /// `TestAOI()` (the server puts an AOITester next to the Avatar, then calls the client);
    /// done by `OnTestAOI(testerID)` if the client knows the tester by then, a failure if not.
    TestAOI,
    /// `TestCallAll()` (the server calls `TestCallAllPlzEcho(avatarID)` on all clients of the
    /// Avatar, each answers `TestCallAllEcho(avatarID)`); done by `OnTestCallAll()`.
    TestCallAll,
    /// `TestListField()`; done by `OnTestListField(list)` when the mirrored `testListField`
    /// attribute equals `list`.
    TestListField,
    /// `TestComplexAttr()`; `OnTestComplexAttrStep1` checks
    /// `complexAttr.key1.key2[1][0].finalkey == "iamhere"`, and `OnTestComplexAttrClear`
    /// (an empty `complexAttr`) completes it.
    TestComplexAttr,
    /// `Say("world", msg)`; done by an `OnSay(sender, name, "world", content)` from itself
    /// (the server calls every client).
    SayInWorldChannel,
    /// `Say("prof", msg)`; done by an `OnSay(sender, name, "prof", content)` from itself
    /// (the server calls the clients of the same profession). A timeout is tolerated, as in
    /// GoWorld.
    SayInProfChannel,
    /// `SendMail(receiver, mail)` to a random Avatar the client knows (itself included),
    /// with GoWorld's 1004-field mail; done by `OnSendMail(ok)`.
    SendMail,
    /// `GetMails()`; done by `OnGetMails(ok)`.
    GetMails,
    /// `TestPublish()`; done by an `OnTestPublish(publisher, subject, content)` whose
    /// publisher is itself (every Avatar subscribes to every test subject).
    TestPublish,
}

/// Why a `-things` list was refused ([`Thing::mask_from`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThingsError {
    /// A name that is no thing's.
    Unknown { name: String },
    /// The list names no thing at all.
    Empty,
}

impl std::fmt::Display for ThingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThingsError::Unknown { name } => write!(f, "unknown thing {name}"),
            ThingsError::Empty => f.write_str("no things named"),
        }
    }
}

impl std::error::Error for ThingsError {}

impl Thing {
    /// Every thing with its weight (GoWorld: all weights 1). GoWorld's DoSendMail, DoGetMails
    /// and DoTestPublish are commented out there; they work here.
    pub const ALL: [(Thing, u64); 11] = [
        (Thing::EnterRandomSpace, 1),
        (Thing::EnterRandomNilSpace, 1),
        (Thing::SendMail, 1),
        (Thing::GetMails, 1),
        (Thing::SayInWorldChannel, 1),
        (Thing::SayInProfChannel, 1),
        (Thing::TestListField, 1),
        (Thing::TestPublish, 1),
        (Thing::TestAOI, 1),
        (Thing::TestCallAll, 1),
        (Thing::TestComplexAttr, 1),
    ];

    /// GoWorld's name for it, used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Thing::EnterRandomSpace => "DoEnterRandomSpace",
            Thing::EnterRandomNilSpace => "DoEnterRandomNilSpace",
            Thing::TestAOI => "DoTestAOI",
            Thing::TestCallAll => "DoTestCallAll",
            Thing::TestListField => "DoTestListField",
            Thing::TestComplexAttr => "DoTestComplexAttr",
            Thing::SayInWorldChannel => "DoSayInWorldChannel",
            Thing::SayInProfChannel => "DoSayInProfChannel",
            Thing::SendMail => "DoSendMail",
            Thing::GetMails => "DoGetMails",
            Thing::TestPublish => "DoTestPublish",
        }
    }

    /// How long its reply may take.
    pub fn timeout(self) -> Duration {
        Duration::from_secs(5)
    }

    /// Whether a timeout is a failure (GoWorld tolerates DoSayInProfChannel's).
    pub fn timeout_fails(self) -> bool {
        self != Thing::SayInProfChannel
    }

    /// GoWorld HEAD's eight things (its test_client has the mail and publish ones
    /// commented out): the workload of GoWorld's reference figures.
    pub const GOWORLD: [Thing; 8] = [
        Thing::EnterRandomSpace,
        Thing::EnterRandomNilSpace,
        Thing::SayInWorldChannel,
        Thing::SayInProfChannel,
        Thing::TestListField,
        Thing::TestAOI,
        Thing::TestCallAll,
        Thing::TestComplexAttr,
    ];

    fn bit(self) -> u16 {
        let i = Thing::ALL
            .iter()
            .position(|(t, _)| *t == self)
            .expect("every thing is in ALL");
        1 << i
    }

    /// The set of things named by `-things`: `all`, `goworld` (GoWorld's eight), or a
    /// comma-separated list of names (`DoTestAOI,DoTestCallAll`).
    pub fn mask_from(list: &str) -> Result<u16, ThingsError> {
        match list {
            "all" => return Ok(Thing::ALL.iter().fold(0, |m, (t, _)| m | t.bit())),
            "goworld" => return Ok(Thing::GOWORLD.iter().fold(0, |m, t| m | t.bit())),
            _ => {}
        }
        let mut mask = 0;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let t = Thing::ALL
                .iter()
                .map(|(t, _)| *t)
                .find(|t| t.name() == name)
                .ok_or_else(|| ThingsError::Unknown {
                    name: name.to_string(),
                })?;
            mask |= t.bit();
        }
        if mask == 0 {
            return Err(ThingsError::Empty);
        }
        Ok(mask)
    }

    fn pick(rng: &mut Rng, mask: u16) -> Thing {
        let total: u64 = Thing::ALL
            .iter()
            .filter(|(t, _)| mask & t.bit() != 0)
            .map(|(_, w)| w)
            .sum();
        let mut r = rng.below(total.max(1));
        for (t, w) in Thing::ALL {
            if mask & t.bit() == 0 {
                continue;
            }
            if r < w {
                return t;
            }
            r -= w;
        }
        Thing::ALL[0].0
    }
}

/// GoWorld's test mail: `a`, `b`, `c`, `d` and `field1`..`field1000` with random ints below
/// 100.
pub fn test_mail(rng: &mut Rng) -> Value {
    let mut m = vec![
        (Value::Str("a".into()), Value::Int(1)),
        (Value::Str("b".into()), Value::Str("b".into())),
        (Value::Str("c".into()), Value::Bool(false)),
        (Value::Str("d".into()), Value::Float(1231.111)),
    ];
    for i in 1..=1000 {
        m.push((
            Value::Str(format!("field{i}")),
            Value::Int(rng.below(100) as i64),
        ));
    }
    Value::Map(m)
}

/// What a bot reports besides the payloads it sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Something GoWorld's strict mode would die on.
    Failure(String),
    /// A thing completed, `latency` after its request.
    ThingDone { thing: Thing, latency: Duration },
}

/// An entity as the client knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEntity {
    pub type_name: String,
    /// The attribute tree; always a map at the root.
    pub attrs: Value,
    pub pos: PosYaw,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    thing: Thing,
    started: Instant,
    deadline: Instant,
}

/// One bot's client state.
#[derive(Debug)]
pub struct Bot {
    /// Bot id; the username is `test<id>`.
    pub id: u64,
    sync: bool,
    /// The largest space kind `DoEnterRandomSpace` asks for.
    kind_max: i64,
    entities: HashMap<Eid, ClientEntity>,
    player: Option<Eid>,
    space: Option<(Eid, i64)>,
    boot_entity: Option<String>,
    logged_in: bool,
    /// Whether the Avatar has entered a space since connecting (the thing loop started).
    started: bool,
    avatar_deadline: Option<Instant>,
    running: Option<Running>,
    next_thing: Option<Instant>,
    next_sync: Option<Instant>,
    events: Vec<Event>,
    things_done: u64,
    /// The things this bot picks from (bits in [`Thing::ALL`] order).
    things: u16,
}

impl Bot {
    /// A bot `test<id>` of `bots` (`-N`, for the space kinds); `sync` enables the position
    /// syncs (off with `-nosync`).
    pub fn new(id: u64, bots: usize, sync: bool) -> Bot {
        Bot {
            id,
            sync,
            kind_max: (bots / BOTS_PER_SPACE_KIND).max(2) as i64,
            entities: HashMap::default(),
            player: None,
            space: None,
            boot_entity: None,
            logged_in: false,
            started: false,
            avatar_deadline: None,
            running: None,
            next_thing: None,
            next_sync: None,
            events: Vec::new(),
            things_done: 0,
            things: u16::MAX,
        }
    }

    /// Restricts the things this bot picks from (`-things`; see [`Thing::mask_from`]).
    /// DoEnterRandomSpace still runs whenever the bot is in no space.
    pub fn set_things(&mut self, mask: u16) {
        self.things = mask;
    }

    /// The connection is up (again) and frames start flowing now: start from a clean client.
    pub fn connected(&mut self, now: Instant) {
        let (id, sync, kind_max, done) = (self.id, self.sync, self.kind_max, self.things_done);
        let things = self.things;
        *self = Bot::new(id, 0, sync);
        self.things = things;
        self.kind_max = kind_max;
        self.things_done = done;
        self.avatar_deadline = Some(now + AVATAR_TIMEOUT);
    }

    /// The connection is gone: nothing is pending any more.
    pub fn disconnected(&mut self) {
        self.avatar_deadline = None;
        self.running = None;
        self.next_thing = None;
        self.next_sync = None;
        self.player = None;
    }

    /// The type of the first player entity since connecting (the boot entity).
    pub fn boot_entity(&self) -> Option<&str> {
        self.boot_entity.as_deref()
    }

    /// Whether the player has been an Avatar since connecting.
    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// Whether the Avatar has entered a space since connecting (the thing loop runs).
    #[cfg(test)]
    pub fn started(&self) -> bool {
        self.started
    }

    /// Things completed since the start.
    pub fn things_done(&self) -> u64 {
        self.things_done
    }

    /// The player entity, if any.
    pub fn player(&self) -> Option<(&Eid, &ClientEntity)> {
        let eid = self.player.as_ref()?;
        Some((eid, self.entities.get(eid)?))
    }

    /// An entity the client knows.
    #[cfg(test)]
    pub fn entity(&self, eid: &Eid) -> Option<&ClientEntity> {
        self.entities.get(eid)
    }

    /// The current space and its kind (`_K`).
    #[cfg(test)]
    pub fn space(&self) -> Option<(Eid, i64)> {
        self.space
    }

    /// The kind of the current space, 0 without one (GoWorld's `currentSpaceKind`).
    fn space_kind(&self) -> i64 {
        self.space.map_or(0, |(_, k)| k)
    }

    /// The thing in progress.
    #[cfg(test)]
    pub fn current_thing(&self) -> Option<Thing> {
        self.running.map(|r| r.thing)
    }

    /// Reports since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The earliest time [`Bot::on_tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.avatar_deadline.filter(|_| !self.started),
            self.running.map(|r| r.deadline),
            self.next_thing,
            self.next_sync,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn fail(&mut self, what: String) {
        self.events
            .push(Event::Failure(format!("bot test{}: {what}", self.id)));
    }

    fn username(&self) -> String {
        format!("test{}", self.id)
    }

    fn player_is_avatar(&self) -> bool {
        self.player().is_some_and(|(_, e)| e.type_name == "Avatar")
    }

    /// Handles one gate→client payload; returns the payloads to send.
    pub fn on_frame(&mut self, now: Instant, payload: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.is_others_chatter(payload) {
            return out;
        }
        let msg = match ServerMsg::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                let t = payload
                    .get(..2)
                    .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
                self.fail(format!("bad message (type {t}) from the gate: {e}"));
                return out;
            }
        };
        log::debug!("bot test{}: {msg:?}", self.id);
        match msg {
            ServerMsg::CreateEntity {
                is_player,
                eid,
                type_name,
                pos,
                client_data,
            } => self.create_entity(
                now,
                rng,
                is_player,
                eid,
                type_name,
                pos,
                client_data,
                &mut out,
            ),
            ServerMsg::DestroyEntity { type_name, eid } => self.destroy_entity(&type_name, &eid),
            ServerMsg::MapAttrChange {
                eid,
                path,
                key,
                val,
            } => self.edit_attrs(&eid, &path, |r| attrs::map_set(r, &path, &key, val)),
            ServerMsg::MapAttrDel { eid, path, key } => {
                self.edit_attrs(&eid, &path, |r| attrs::map_del(r, &path, &key))
            }
            ServerMsg::MapAttrClear { eid, path } => {
                self.edit_attrs(&eid, &path, |r| attrs::map_clear(r, &path))
            }
            ServerMsg::ListAttrChange {
                eid,
                path,
                index,
                val,
            } => self.edit_attrs(&eid, &path, |r| attrs::list_set(r, &path, index, val)),
            ServerMsg::ListAttrAppend { eid, path, val } => {
                self.edit_attrs(&eid, &path, |r| attrs::list_append(r, &path, val))
            }
            ServerMsg::ListAttrPop { eid, path } => {
                self.edit_attrs(&eid, &path, |r| attrs::list_pop(r, &path))
            }
            ServerMsg::CallMethod { eid, method, args } => {
                self.call_method(now, rng, &eid, &method, &args, &mut out)
            }
            ServerMsg::CallFiltered { method, args, .. } => match self.player {
                Some(p) => self.call_method(now, rng, &p, &method, &args, &mut out),
                // World chat reaches clients still logging in (GoWorld's client logs it).
                None => log::debug!(
                    "bot test{}: filtered call {method} while there is no player",
                    self.id
                ),
            },
            ServerMsg::SyncPositions(recs) => {
                for (eid, p) in recs {
                    if let Some(e) = self.entities.get_mut(&eid) {
                        e.pos = p;
                    }
                }
            }
        }
        out
    }

    /// True for a chat line (`OnSay`) or a published message (`OnTestPublish`) that another
    /// client's Avatar caused, to an entity this bot knows: every client gets those (N² a
    /// second with world chat), and nothing about them is checked but their shape, which
    /// [`wire::peek_call`] does without decoding them. Anything else (including a malformed
    /// one) goes through the full decode.
    fn is_others_chatter(&self, payload: &[u8]) -> bool {
        let Some(call) = wire::peek_call(payload) else {
            return false;
        };
        let Some(player) = self.player else {
            return false;
        };
        let shaped = match (call.method, call.nargs) {
            (b"OnSay", 4) => call.eid.is_none() || call.eid == Some(player),
            (b"OnTestPublish", 3) => call.eid.is_some_and(|e| self.entities.contains_key(&e)),
            _ => false,
        };
        shaped
            && goworld_common::msgpack::str_exact(call.first_arg)
                .is_some_and(|sender| sender != player.0.as_slice())
    }

    #[allow(clippy::too_many_arguments)]
    fn create_entity(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        is_player: bool,
        eid: Eid,
        type_name: String,
        pos: PosYaw,
        client_data: Value,
        out: &mut Vec<Vec<u8>>,
    ) {
        if type_name == SPACE_TYPE {
            let kind = client_data.map_get("_K").and_then(attrs::as_int);
            if kind.is_none() {
                self.fail(format!("space {eid} created without an int _K"));
            }
            if let Some((old, _)) = self.space {
                log::warn!("bot test{}: space {eid} created while in {old}", self.id);
            }
            self.space = Some((eid, kind.unwrap_or(0)));
            // GoWorld's OnEnterSpace: the first space starts the thing loop, later ones
            // complete DoEnterRandomSpace.
            if self.started {
                self.thing_done(now, rng, Thing::EnterRandomSpace);
            } else if self.player_is_avatar() {
                self.started = true;
                self.schedule_thing(now, rng);
            } else {
                log::warn!(
                    "bot test{}: space {eid} entered without an Avatar player; the things \
                     start in the first space of the Avatar",
                    self.id
                );
            }
            return;
        }
        if self.entities.contains_key(&eid) {
            // GoWorld keeps the entity it has.
            log::warn!(
                "bot test{}: entity {type_name}<{eid}> created twice",
                self.id
            );
            return;
        }
        let attrs = match client_data {
            Value::Map(m) => Value::Map(m),
            Value::Nil => Value::Map(Vec::new()),
            other => {
                self.fail(format!(
                    "{type_name}<{eid}> created with clientData that is not a map: {other:?}"
                ));
                Value::Map(Vec::new())
            }
        };
        self.entities.insert(
            eid,
            ClientEntity {
                type_name: type_name.clone(),
                attrs,
                pos,
            },
        );
        if !is_player {
            return;
        }
        if let Some(old) = self.player {
            log::warn!(
                "bot test{}: player {type_name}<{eid}> created while the player is {old}",
                self.id
            );
        }
        self.player = Some(eid);
        self.running = None;
        self.next_thing = None;
        self.boot_entity.get_or_insert_with(|| type_name.clone());
        match type_name.as_str() {
            "Account" => {
                log::debug!("bot test{}: Account<{eid}> Login ...", self.id);
                let user = self.username();
                out.push(wire::call_entity_method(
                    &eid,
                    "Login",
                    &[user.into(), PASSWORD.into()],
                ));
            }
            // The things start when the Avatar enters its first space.
            "Avatar" => self.logged_in = true,
            _ => {}
        }
    }

    fn destroy_entity(&mut self, type_name: &str, eid: &Eid) {
        if type_name == SPACE_TYPE {
            match self.space {
                Some((s, _)) if s == *eid => self.space = None,
                _ => log::warn!("bot test{}: destroy of unknown space {eid}", self.id),
            }
            return;
        }
        if self.entities.remove(eid).is_some() && self.player == Some(*eid) {
            self.player = None;
            self.running = None;
            self.next_thing = None;
        }
    }

    fn edit_attrs(
        &mut self,
        eid: &Eid,
        path: &[PathKey],
        edit: impl FnOnce(&mut Value) -> Result<(), attrs::AttrError>,
    ) {
        let Some(e) = self.entities.get_mut(eid) else {
            self.fail(format!(
                "entity {eid} not found for an attribute update of {}",
                attrs::show(path)
            ));
            return;
        };
        if let Err(err) = edit(&mut e.attrs) {
            let what = format!("{}<{eid}>: attribute update failed: {err}", e.type_name);
            self.fail(what);
        }
    }

    fn schedule_thing(&mut self, now: Instant, rng: &mut Rng) {
        let ms = rng.below(THING_DELAY_MAX.as_millis() as u64);
        self.next_thing = Some(now + Duration::from_millis(ms));
    }

    /// Starts `thing` now: the player (an Avatar) calls its server method. `None` (nothing
    /// started) without an Avatar player.
    fn start_thing(&mut self, now: Instant, rng: &mut Rng, thing: Thing) -> Option<Vec<u8>> {
        let p = self.player.filter(|_| self.player_is_avatar())?;
        self.running = Some(Running {
            thing,
            started: now,
            deadline: now + thing.timeout(),
        });
        let (method, args) = self.request(rng, thing, p);
        Some(wire::call_entity_method(&p, method, &args))
    }

    /// The server method the player `p` calls for `thing`, and its arguments.
    fn request(&self, rng: &mut Rng, thing: Thing, p: Eid) -> (&'static str, Vec<Value>) {
        let say = |channel: &str| {
            let content = format!("this is a message in {channel} channel");
            ("Say", vec![channel.into(), content.into()])
        };
        match thing {
            Thing::EnterRandomSpace => {
                ("EnterSpace", vec![Value::Int(self.random_space_kind(rng))])
            }
            Thing::EnterRandomNilSpace => ("EnterRandomNilSpace", vec![]),
            Thing::TestAOI => ("TestAOI", vec![]),
            Thing::TestCallAll => ("TestCallAll", vec![]),
            Thing::TestListField => ("TestListField", vec![]),
            Thing::TestComplexAttr => ("TestComplexAttr", vec![]),
            Thing::SayInWorldChannel => say("world"),
            Thing::SayInProfChannel => say("prof"),
            Thing::SendMail => {
                // GoWorld: a random Avatar among the client's entities (its own included).
                let mut avatars: Vec<Eid> = self
                    .entities
                    .iter()
                    .filter(|(_, e)| e.type_name == "Avatar")
                    .map(|(eid, _)| *eid)
                    .collect();
                avatars.sort();
                let receiver = if avatars.is_empty() {
                    p
                } else {
                    avatars[rng.below(avatars.len() as u64) as usize]
                };
                ("SendMail", vec![eid_value(&receiver), test_mail(rng)])
            }
            Thing::GetMails => ("GetMails", vec![]),
            Thing::TestPublish => ("TestPublish", vec![]),
        }
    }

    /// GoWorld's `DoEnterRandomSpace` kind: uniform in 1..=kind_max, then, if it is the
    /// current kind, the next one (wrapping to 1).
    fn random_space_kind(&self, rng: &mut Rng) -> i64 {
        let cur = self.space_kind();
        let mut kind = 1 + rng.below(self.kind_max as u64) as i64;
        while kind == cur {
            kind = if kind >= self.kind_max { 1 } else { kind + 1 };
        }
        kind
    }

    /// Completes `thing` if it is the one in progress.
    fn thing_done(&mut self, now: Instant, rng: &mut Rng, thing: Thing) {
        if let Some(r) = self.running.filter(|r| r.thing == thing) {
            self.events.push(Event::ThingDone {
                thing,
                latency: now.saturating_duration_since(r.started),
            });
            self.things_done += 1;
            self.running = None;
            self.schedule_thing(now, rng);
        }
    }

    /// Ends `thing` (if in progress) after its check failed; the failure is reported once.
    fn thing_failed(&mut self, now: Instant, rng: &mut Rng, thing: Thing, what: String) {
        self.fail(what);
        if self.running.is_some_and(|r| r.thing == thing) {
            self.running = None;
            self.schedule_thing(now, rng);
        }
    }

    /// Runs client method `method` of entity `eid` (GoWorld: a reflective call on the client
    /// entity). Unknown entities and methods are failures, except `OnLogin` on an entity
    /// already gone (the Account may be destroyed before its reply arrives).
    fn call_method(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        eid: &Eid,
        method: &str,
        args: &[Value],
        out: &mut Vec<Vec<u8>>,
    ) {
        let Some(ent) = self.entities.get(eid) else {
            if method != "OnLogin" {
                self.fail(format!(
                    "entity {eid} is not found while calling method {method}"
                ));
            }
            return;
        };
        let arity = match method {
            "OnTestComplexAttrStep1"
            | "OnTestComplexAttrClear"
            | "OnTestCallAll"
            | "OnEnterRandomNilSpace" => 0,
            "OnLogin" | "OnTestListField" | "OnTestAOI" | "TestCallAllPlzEcho" | "OnSendMail"
            | "OnGetMails" => 1,
            "OnTestPublish" => 3,
            "OnSay" => 4,
            _ => {
                let what = format!("client method {method} of {} is not found", ent.type_name);
                self.fail(what);
                return;
            }
        };
        if args.len() != arity {
            self.fail(format!(
                "client method {method} takes {arity} arguments, got {}",
                args.len()
            ));
            return;
        }
        let is_player = self.player == Some(*eid);
        match method {
            "OnLogin" if args[0].as_bool() != Some(true) => {
                self.fail(format!("login failed: OnLogin({:?})", args[0]));
            }
            "OnTestListField" => {
                let mismatch = list_mismatch(&ent.attrs, &args[0]);
                match mismatch {
                    Some(what) => {
                        let what = format!("OnTestListField: {what}");
                        self.thing_failed(now, rng, Thing::TestListField, what)
                    }
                    None if is_player => self.thing_done(now, rng, Thing::TestListField),
                    None => {}
                }
            }
            "OnTestComplexAttrStep1" => {
                if let Some(what) = complex_attr_step1_mismatch(&ent.attrs) {
                    let what = format!("OnTestComplexAttrStep1: {what}");
                    self.thing_failed(now, rng, Thing::TestComplexAttr, what);
                }
            }
            "OnTestComplexAttrClear" => match ent.attrs.map_get("complexAttr") {
                Some(Value::Map(m)) if m.is_empty() => {
                    if is_player {
                        self.thing_done(now, rng, Thing::TestComplexAttr);
                    }
                }
                other => {
                    let what =
                        format!("OnTestComplexAttrClear: complexAttr should be empty: {other:?}");
                    self.thing_failed(now, rng, Thing::TestComplexAttr, what);
                }
            },
            "OnTestAOI" => {
                // GoWorld: the AOITester must already be on the client when this arrives.
                let found = args[0]
                    .as_str()
                    .and_then(Eid::from_str_bytes)
                    .is_some_and(|t| self.entities.contains_key(&t));
                if !found {
                    let what = format!("OnTestAOI: can not find AOITester<{:?}>", args[0]);
                    self.thing_failed(now, rng, Thing::TestAOI, what);
                } else if is_player {
                    self.thing_done(now, rng, Thing::TestAOI);
                }
            }
            "OnEnterRandomNilSpace" if is_player => {
                self.thing_done(now, rng, Thing::EnterRandomNilSpace)
            }
            "OnTestCallAll" if is_player => self.thing_done(now, rng, Thing::TestCallAll),
            "OnSay" => {
                // GoWorld: done when the sender is this client's entity; other senders and
                // channels are just chat.
                let from_me = args[0].as_str().and_then(Eid::from_str_bytes) == Some(*eid);
                match args[2].as_str() {
                    Some("world") if from_me => self.thing_done(now, rng, Thing::SayInWorldChannel),
                    Some("prof") if from_me => self.thing_done(now, rng, Thing::SayInProfChannel),
                    _ => {}
                }
            }
            "OnSendMail" => {
                // GoWorld completes on any answer.
                if args[0].as_bool() != Some(true) {
                    log::warn!("bot test{}: OnSendMail({:?})", self.id, args[0]);
                }
                if is_player {
                    self.thing_done(now, rng, Thing::SendMail);
                }
            }
            "OnGetMails" => {
                if args[0].as_bool() != Some(true) {
                    log::warn!("bot test{}: OnGetMails({:?})", self.id, args[0]);
                }
                if is_player {
                    self.thing_done(now, rng, Thing::GetMails);
                }
            }
            "OnTestPublish" => {
                let publisher = args[0].as_str().and_then(Eid::from_str_bytes);
                if is_player && publisher == Some(*eid) {
                    self.thing_done(now, rng, Thing::TestPublish);
                }
            }
            "TestCallAllPlzEcho" => {
                // GoWorld's ClientEntity: `e.CallServer("TestCallAllEcho", eid)`, i.e. on the
                // entity the call came to (the Avatar that called all its clients, whose ID
                // is also the argument), which allows it as an `_AllClients` method.
                out.push(wire::call_entity_method(
                    eid,
                    "TestCallAllEcho",
                    std::slice::from_ref(&args[0]),
                ));
            }
            // OnLogin(true), and replies on entities other than the player.
            _ => {}
        }
    }

    /// Fires due timers: the Avatar deadline, a thing's timeout, the next thing, and the
    /// position sync. Returns the payloads to send.
    pub fn on_tick(&mut self, now: Instant, rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if !self.started && self.avatar_deadline.is_some_and(|t| now >= t) {
            self.avatar_deadline = None;
            let what = match &self.boot_entity {
                None => "no boot entity".to_string(),
                Some(_) if self.logged_in => "an Avatar but no space".to_string(),
                Some(t) => format!("boot entity {t} but no Avatar"),
            };
            self.fail(format!("{what} {AVATAR_TIMEOUT:?} after connecting"));
        }
        if let Some(r) = self.running.filter(|r| now >= r.deadline) {
            self.running = None;
            if r.thing.timeout_fails() {
                self.fail(format!("{} TIMEOUT !!!", r.thing.name()));
            } else {
                log::debug!(
                    "bot test{}: {} TIMEOUT (tolerated)",
                    self.id,
                    r.thing.name()
                );
            }
            self.schedule_thing(now, rng);
        }
        if self.running.is_none() && self.next_thing.is_some_and(|t| now >= t) {
            self.next_thing = None;
            // GoWorld: in no space or the nil space (kind 0) the only thing is to enter one.
            let thing = if self.space_kind() == 0 {
                Thing::EnterRandomSpace
            } else {
                Thing::pick(rng, self.things)
            };
            out.extend(self.start_thing(now, rng, thing));
        }
        if self.sync && self.player_is_avatar() {
            if self.next_sync.is_none_or(|t| now >= t) {
                self.next_sync = Some(now + SYNC_INTERVAL);
                if rng.f32() < 0.5 {
                    let dx = -0.01 + 0.02 * rng.f32();
                    let dz = -0.01 + 0.01 * rng.f32();
                    let yaw = rng.f32() * std::f32::consts::PI;
                    if let Some(p) = self.player {
                        if let Some(e) = self.entities.get_mut(&p) {
                            e.pos.x += dx;
                            e.pos.z += dz;
                            e.pos.yaw = yaw;
                            out.push(wire::sync_position_yaw(&p, e.pos));
                        }
                    }
                }
            }
        } else {
            self.next_sync = None;
        }
        out
    }
}

/// An entity ID as an RPC argument (a string, like GoWorld's `EntityID`).
fn eid_value(eid: &Eid) -> Value {
    Value::Str(String::from_utf8_lossy(&eid.0).into_owned())
}

/// Why the mirrored `testListField` differs from the server's list, if it does (GoWorld
/// compares sizes, then items as ints).
fn list_mismatch(attrs: &Value, server: &Value) -> Option<String> {
    let Some(server) = server.as_array() else {
        return Some(format!("the argument is not a list: {server:?}"));
    };
    let Some(client) = attrs.map_get("testListField").and_then(Value::as_array) else {
        return Some("the client has no testListField list".into());
    };
    if server.len() != client.len() {
        return Some(format!(
            "server list size is {}, but client list size is {}",
            server.len(),
            client.len()
        ));
    }
    for (i, (s, c)) in server.iter().zip(client).enumerate() {
        let (si, ci) = (attrs::as_int(s), attrs::as_int(c));
        if si.is_none() || si != ci {
            return Some(format!("item {i}: server has {s:?}, client has {c:?}"));
        }
    }
    None
}

/// Why `complexAttr.key1.key2[1][0].finalkey` is not "iamhere", if it is not.
fn complex_attr_step1_mismatch(attrs: &Value) -> Option<String> {
    let v = attrs
        .map_get("complexAttr")
        .and_then(|c| c.map_get("key1"))
        .and_then(|c| c.map_get("key2"))
        .and_then(|c| c.as_array()?.get(1)?.as_array()?.first())
        .and_then(|c| c.map_get("finalkey"));
    match v.and_then(Value::as_str) {
        Some("iamhere") => None,
        _ => Some(format!(
            "finalkey should be 'iamhere', but complexAttr is {:?}",
            attrs.map_get("complexAttr")
        )),
    }
}

#[cfg(test)]
#[path = "bot_tests.rs"]
mod tests;

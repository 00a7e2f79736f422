//! Avatar: the player (GoWorld's examples/test_game/Avatar.go), with its attributes and the
//! test RPCs the bots exercise: chat through filtered client calls, mails through
//! MailService, publish/subscribe through PublishSubscribeService, and its presence in
//! OnlineService.

use goworld_common::id::EntityId;
use goworld_common::msgpack::Value;
use goworld_common::proto::FilterOp;
use goworld_game::args;
use goworld_game::attr::{ListAttr, MapAttr};
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

use crate::pubsub;

/// The subjects every Avatar subscribes to and `TestPublish` publishes on (a trailing `*`
/// is a prefix subscription; publishing replaces it with a number below 100).
pub const TEST_PUBLISH_SUBSCRIBE_SUBJECTS: [&str; 5] =
    ["monster", "npc", "item", "avatar", "boss_*"];

/// The player's name, seen by every client that sees it.
pub const NAME: Attr<String> = Attr::all_clients("name").persistent();
/// Its level.
pub const LEVEL: Attr<i64> = Attr::all_clients("level").persistent();
/// Its profession (1..=4), the filter of "prof" chat.
pub const PROF: Attr<i64> = Attr::all_clients("prof").persistent();
/// Experience, seen by its own client.
pub const EXP: Attr<i64> = Attr::client("exp").persistent();
/// Mails received: mail ID (as text) to the mail's hex.
pub const MAILS: Attr<MapAttr> = Attr::client("mails").persistent();
/// The kind of the space it lives in.
pub const SPACE_KIND: Attr<i64> = Attr::server("spaceKind").persistent();
/// The newest mail ID received.
pub const LAST_MAIL_ID: Attr<i64> = Attr::server("lastMailID").persistent();
/// A list the bots change at random (TestListField).
pub const TEST_LIST_FIELD: Attr<ListAttr> = Attr::all_clients("testListField");
/// Set while it moves to another game's nil space (TestEnterNilSpace).
pub const ENTERING_NIL_SPACE: Attr<bool> = Attr::server("enteringNilSpace");
/// Echoes of TestCallAll still expected.
pub const TEST_CALL_ALL_N: Attr<i64> = Attr::server("testCallAllN");
/// The nested structure TestComplexAttr builds and clears.
pub const COMPLEX_ATTR: Attr<MapAttr> = Attr::client("complexAttr");

/// The player entity.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Avatar {
    /// The kind of the space SpaceService last sent it to (to ask again if that space is
    /// gone).
    entering_kind: i64,
}

impl Entity for Avatar {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.persistent(true)
            .use_aoi(100.0)
            .attr(NAME)
            .attr(LEVEL)
            .attr(PROF)
            .attr(EXP)
            .attr(MAILS)
            .attr(SPACE_KIND)
            .attr(LAST_MAIL_ID)
            .attr(TEST_LIST_FIELD)
            .attr(ENTERING_NIL_SPACE)
            .attr(TEST_CALL_ALL_N)
            .attr(COMPLEX_ATTR)
            .method("TestListField", Expose::OwnClient, Avatar::test_list_field)
            .method(
                "TestComplexAttr",
                Expose::OwnClient,
                Avatar::test_complex_attr,
            )
            .method("GetSpaceID", Expose::Server, Avatar::get_space_id)
            .method("Say", Expose::OwnClient, Avatar::say)
            .method("SendMail", Expose::OwnClient, Avatar::send_mail)
            .method("OnSendMail", Expose::Server, Avatar::on_send_mail)
            .method(
                "NotifyReceiveMail",
                Expose::Server,
                Avatar::notify_receive_mail,
            )
            .method("GetMails", Expose::OwnClient, Avatar::get_mails)
            .method("OnGetMails", Expose::Server, Avatar::on_get_mails)
            .method("TestPublish", Expose::OwnClient, Avatar::test_publish)
            .method("OnPublish", Expose::Server, Avatar::on_publish)
            .method(
                "Resubscribe",
                Expose::Server,
                |_: &mut Avatar, ctx: &mut Ctx, (): ()| subscribe_all(ctx),
            )
            .method("EnterSpace", Expose::OwnClient, Avatar::enter_space_client)
            .method(
                "SetClientSyncing",
                Expose::OwnClient,
                Avatar::set_client_syncing,
            )
            .method("DoEnterSpace", Expose::Server, Avatar::do_enter_space)
            .method(
                "EnterRandomNilSpace",
                Expose::OwnClient,
                Avatar::enter_random_nil_space,
            )
            .method("TestAOI", Expose::OwnClient, Avatar::test_aoi)
            .method("TestCallAll", Expose::OwnClient, Avatar::test_call_all)
            .method(
                "TestCallAllEcho",
                Expose::AllClients,
                Avatar::test_call_all_echo,
            );
    }

    fn on_attrs_ready(&mut self, ctx: &mut Ctx) {
        let prof = 1 + ctx.rng().below(4) as i64;
        let kind = 1 + ctx.rng().below(100) as i64;
        ctx.set_default(NAME, "无名");
        ctx.set_default(LEVEL, 1);
        ctx.set_default(EXP, 0);
        ctx.set_default(PROF, prof);
        ctx.set_default(SPACE_KIND, kind);
        ctx.set_default(LAST_MAIL_ID, 0);
        ctx.set_default(MAILS, MapAttr::new());
        ctx.set_default(TEST_LIST_FIELD, ListAttr::new());
        ctx.set_default(ENTERING_NIL_SPACE, false);
    }

    /// Checks in with OnlineService and subscribes to the test subjects.
    fn on_created(&mut self, ctx: &mut Ctx) {
        let id = ctx.id();
        let name = ctx.get(NAME);
        let level = ctx.get(LEVEL);
        ctx.call_service_shard_key(
            "OnlineService",
            &id.to_text(),
            "CheckIn",
            args![id, name, level],
        );
        subscribe_all(ctx);
    }

    /// Checks out of OnlineService and drops every subscription.
    fn on_destroy(&mut self, ctx: &mut Ctx) {
        let id = ctx.id();
        ctx.call_service_shard_key("OnlineService", &id.to_text(), "CheckOut", args![id]);
        ctx.call_service_all(pubsub::SERVICE_NAME, "UnsubscribeAll", args![id]);
    }

    fn on_client_connected(&mut self, ctx: &mut Ctx) {
        for key in [SPACE_KIND, LEVEL, PROF] {
            let v = ctx.get(key).to_string();
            ctx.set_client_filter_prop(key.name(), &v);
        }
        ctx.set_client_filter_prop("online", "0");
        ctx.set_client_filter_prop("online", "1");
        let kind = ctx.get(SPACE_KIND);
        enter_space_kind(ctx, kind);
    }

    /// The space SpaceService chose is gone (its game died, or it was destroyed): tell the
    /// service to forget it, and ask for a space of that kind again. (GoWorld's Avatar does
    /// not hear of it, and its bot times out.)
    fn on_enter_space_failed(&mut self, ctx: &mut Ctx, space: EntityId) {
        let kind = self.entering_kind;
        if kind == 0 {
            return;
        }
        ctx.call_service_shard_key(
            "SpaceService",
            &kind.to_string(),
            "SpaceGone",
            args![kind, space],
        );
        enter_space_kind(ctx, kind);
    }

    /// Arrived from another game: an EnterRandomNilSpace that migrated is done.
    fn on_migrate_in(&mut self, ctx: &mut Ctx) {
        if ctx.get(ENTERING_NIL_SPACE) {
            ctx.del(ENTERING_NIL_SPACE);
            ctx.call_client("OnEnterRandomNilSpace", args![]);
        }
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        ctx.destroy();
    }
}

impl Avatar {
    /// Pops, sets or appends a random element of `testListField`, then sends the list.
    fn test_list_field(&mut self, ctx: &mut Ctx, (): ()) {
        let r1 = ctx.rng().unit();
        let r2 = ctx.rng().unit();
        let n = (ctx.attrs.get_list(TEST_LIST_FIELD.name())).map_or(0, |l| l.len());
        let pick = ctx.rng().below(n as u64) as usize;
        let value = ctx.rng().below(100) as i64;
        let mut list = ctx.list(TEST_LIST_FIELD).expect("testListField is a list");
        if n > 0 && r1 < 0.3333333333 {
            let _ = list.pop_int();
        } else if n > 0 && r2 < 0.5 {
            let _ = list.set_int(pick, value);
        } else {
            list.append_int(value);
        }
        let items: Vec<i64> = (ctx.attrs.get_list(TEST_LIST_FIELD.name()))
            .map(|l| (0..l.len()).filter_map(|i| l.get_int(i).ok()).collect())
            .unwrap_or_default();
        ctx.call_client("OnTestListField", args![items]);
    }

    /// Builds `complexAttr.key1.key2 = [true, [{finalkey: "iamhere"}]]` step by step, then
    /// clears it, telling the client after each step.
    fn test_complex_attr(&mut self, ctx: &mut Ctx, (): ()) {
        {
            let mut complex = ctx.map(COMPLEX_ATTR).expect("map");
            let mut key1 = complex.map("key1").expect("map");
            let mut key2 = key1.list("key2").expect("list");
            key2.append_bool(true);
            key2.append_list(ListAttr::new());
            let mut idx1 = key2.list(1).expect("appended list");
            idx1.append_map(MapAttr::new());
            let mut inner = idx1.map(0).expect("appended map");
            inner.set_str("finalkey", "iamhere");
        }
        ctx.call_client("OnTestComplexAttrStep1", args![]);
        let _ = ctx.map(COMPLEX_ATTR).expect("map").clear();
        ctx.call_client("OnTestComplexAttrClear", args![]);
    }

    /// `Say(channel, content)` from the client: `OnSay(id, name, channel, content)` to every
    /// client ("world") or to the clients of the same profession ("prof").
    fn say(&mut self, ctx: &mut Ctx, (channel, content): (String, String)) {
        let id = ctx.id();
        let name = ctx.get(NAME);
        let args = args![id, name, channel, content];
        match channel.as_str() {
            "world" => ctx.call_filtered_clients("", FilterOp::Eq, "", "OnSay", args),
            "prof" => {
                let prof = ctx.get(PROF).to_string();
                ctx.call_filtered_clients("prof", FilterOp::Eq, &prof, "OnSay", args)
            }
            // GoWorld panics.
            _ => log::warn!("Avatar<{id}>.Say: invalid channel {channel:?}"),
        }
    }

    /// `SendMail(targetID, mail)` from the client, through MailService.
    fn send_mail(&mut self, ctx: &mut Ctx, (target, mail): (EntityId, Value)) {
        let id = ctx.id();
        let name = ctx.get(NAME);
        ctx.call_service_any("MailService", "SendMail", args![id, name, target, mail]);
    }

    /// MailService stored (or failed to store) the mail this Avatar sent.
    fn on_send_mail(&mut self, ctx: &mut Ctx, (ok,): (bool,)) {
        ctx.call_client("OnSendMail", args![ok]);
    }

    /// A mail arrived for this Avatar (GoWorld does nothing either; the client asks).
    fn notify_receive_mail(&mut self, _ctx: &mut Ctx, (): ()) {}

    /// `GetMails()` from the client: the mails after `lastMailID`, through MailService.
    fn get_mails(&mut self, ctx: &mut Ctx, (): ()) {
        let id = ctx.id();
        let last = ctx.get(LAST_MAIL_ID);
        ctx.call_service_any("MailService", "GetMails", args![id, last]);
    }

    /// MailService's answer: `[[mailID, mail]...]` after `lastMailID`, kept in `mails`;
    /// then `OnGetMails(ok)` to the client (false if another read got there first).
    fn on_get_mails(&mut self, ctx: &mut Ctx, (last, mails): (i64, Vec<Value>)) {
        let id = ctx.id();
        let mut local = ctx.get(LAST_MAIL_ID);
        if last != local {
            log::warn!(
                "Avatar<{id}>.OnGetMails: lastMailID mismatch: local={local}, return={last}"
            );
            ctx.call_client("OnGetMails", args![false]);
            return;
        }
        for item in &mails {
            let parts = item.as_array().unwrap_or(&[]);
            let (Some(mail_id), Some(mail)) = (
                parts.first().and_then(Value::as_i64),
                parts.get(1).and_then(Value::as_str),
            ) else {
                log::warn!("Avatar<{id}>.OnGetMails: a mail is not [id, mail]: {item:?}");
                continue;
            };
            if mail_id <= local {
                // GoWorld panics: IDs must increase.
                log::warn!("Avatar<{id}>.OnGetMails: mail {mail_id} is not after {local}");
                continue;
            }
            let key = mail_id.to_string();
            if (ctx.attrs.get_map(MAILS.name())).is_some_and(|m| m.has_key(&key)) {
                log::warn!("Avatar<{id}>: mail {mail_id} received twice");
                continue;
            }
            let mut mails_attr = ctx.map(MAILS).expect("mails is a map");
            mails_attr.set_str(&key, mail);
            ctx.set(LAST_MAIL_ID, mail_id);
            local = mail_id;
        }
        ctx.call_client("OnGetMails", args![true]);
    }

    /// `TestPublish()` from the client: publishes `"<id>: hello <subject>, ..."` on a random
    /// test subject (`boss_*` becomes `boss_<0..99>`).
    fn test_publish(&mut self, ctx: &mut Ctx, (): ()) {
        let n = TEST_PUBLISH_SUBSCRIBE_SUBJECTS.len() as u64;
        let pattern = TEST_PUBLISH_SUBSCRIBE_SUBJECTS[ctx.rng().below(n) as usize];
        let subject = match pattern.strip_suffix('*') {
            Some(prefix) => format!("{prefix}{}", ctx.rng().below(100)),
            None => pattern.to_string(),
        };
        let content = format!(
            "{}: hello {subject}, this is a test publish message",
            ctx.id()
        );
        ctx.call_service_shard_key(
            pubsub::SERVICE_NAME,
            &subject,
            "Publish",
            args![subject, content],
        );
    }

    /// A message on a subscribed subject: the publisher is the ID the content starts with;
    /// the client gets `OnTestPublish(publisher, subject, content)`.
    fn on_publish(&mut self, ctx: &mut Ctx, (subject, content): (String, String)) {
        let Some(publisher) = content.get(..16).and_then(EntityId::parse) else {
            log::warn!(
                "Avatar<{}>.OnPublish: no publisher ID in {content:?}",
                ctx.id()
            );
            return;
        };
        ctx.call_client("OnTestPublish", args![publisher, subject, content]);
    }

    /// Answers where this Avatar is: the caller gets `OnGetAvatarSpaceID(avatar, space)`.
    fn get_space_id(&mut self, ctx: &mut Ctx, (caller,): (EntityId,)) {
        let space = ctx.space_id();
        ctx.call(caller, "OnGetAvatarSpaceID", args![ctx.id(), space]);
    }

    /// `EnterSpace(kind)` from the client: SpaceService finds or makes a space of `kind`.
    fn enter_space_client(&mut self, ctx: &mut Ctx, (kind,): (i64,)) {
        enter_space_kind(ctx, kind);
    }

    /// `SetClientSyncing(on)` from the client: whether the client's position syncs move this
    /// Avatar (GoWorld's demos turn it on for the player; the bots never call it, so their
    /// Avatars stay where the server puts them). It goes with the Avatar when it migrates and
    /// across a hot swap.
    fn set_client_syncing(&mut self, ctx: &mut Ctx, (on,): (bool,)) {
        ctx.set_client_syncing(on);
    }

    /// SpaceService's answer: enter `space` at a random spot in [-400, 400) on X and Z.
    fn do_enter_space(&mut self, ctx: &mut Ctx, (kind, space): (i64, EntityId)) {
        self.entering_kind = kind;
        let x = ctx.rng().below(800) as f32 - 400.0;
        let z = ctx.rng().below(800) as f32 - 400.0;
        ctx.enter_space(space, Vec3::new(x, 0.0, z));
    }

    /// `EnterRandomNilSpace()` from the client: the nil space of a random online game; the
    /// client hears `OnEnterRandomNilSpace` at once if it is this game, or after the move.
    fn enter_random_nil_space(&mut self, ctx: &mut Ctx, (): ()) {
        let games: Vec<u16> = ctx.online_games().iter().copied().collect();
        if games.is_empty() {
            return;
        }
        let game = games[ctx.rng().below(games.len() as u64) as usize];
        let nil = goworld_common::id::nil_space_id(game);
        if game == ctx.game_id() {
            ctx.set(ENTERING_NIL_SPACE, false);
            if ctx.space_id() != nil {
                ctx.enter_space(nil, Vec3::default());
            }
            ctx.call_client("OnEnterRandomNilSpace", args![]);
        } else {
            ctx.set(ENTERING_NIL_SPACE, true);
            ctx.enter_space(nil, Vec3::default());
        }
    }

    /// `TestAOI()` from the client: an AOITester appears next to this Avatar, the client is
    /// told its ID (after its create, by AOI), and it goes away.
    fn test_aoi(&mut self, ctx: &mut Ctx, (): ()) {
        let space = ctx.space_id();
        let pos = ctx.position();
        let tester = ctx.create_entity_in(space, "AOITester", pos);
        ctx.call_client("OnTestAOI", args![tester]);
        ctx.destroy_entity(tester);
    }

    /// `TestCallAll()` from the client: `TestCallAllPlzEcho(id)` to this Avatar's client and
    /// the clients that see it; `OnTestCallAll` once each has echoed. The count is exactly
    /// the recipients (GoWorld counts the Avatars this one sees, the same set while every
    /// Avatar has a client and one AOI distance).
    fn test_call_all(&mut self, ctx: &mut Ctx, (): ()) {
        let id = ctx.id();
        let watchers = ctx
            .interested_by()
            .iter()
            .filter(|w| ctx.has_client(w))
            .count();
        let n = watchers as i64 + i64::from(ctx.client().is_some());
        ctx.set(TEST_CALL_ALL_N, n);
        ctx.call_all_clients("TestCallAllPlzEcho", args![id]);
    }

    /// A client got this Avatar's `TestCallAllPlzEcho(eid)` and echoes it here.
    fn test_call_all_echo(&mut self, ctx: &mut Ctx, (eid,): (EntityId,)) {
        if eid != ctx.id() {
            log::warn!("Avatar<{}>.TestCallAllEcho for {eid}; ignored", ctx.id());
            return;
        }
        let left = ctx.get(TEST_CALL_ALL_N) - 1;
        ctx.set(TEST_CALL_ALL_N, left);
        if left == 0 {
            ctx.call_client("OnTestCallAll", args![]);
        }
    }
}

/// Asks SpaceService (sharded by kind) for a space of `kind`, unless already in one.
fn enter_space_kind(ctx: &mut Ctx, kind: i64) {
    if ctx.space_kind() == kind {
        return;
    }
    let id = ctx.id();
    ctx.call_service_shard_key(
        "SpaceService",
        &kind.to_string(),
        "EnterSpace",
        args![id, kind],
    );
}

/// Subscribes the Avatar to [`TEST_PUBLISH_SUBSCRIBE_SUBJECTS`] (on creation, and again when a
/// PublishSubscribeService shard is re-created after its game died).
fn subscribe_all(ctx: &mut Ctx) {
    let id = ctx.id();
    for subject in TEST_PUBLISH_SUBSCRIBE_SUBJECTS {
        if subject.ends_with('*') {
            // GoWorld shards this by the pattern, but a publish by the concrete subject, so
            // the two rarely meet (pubsub.rs); a prefix subscription goes to every shard
            // instead. Shard by shard rather than CallServiceAll: a call to all shards waits
            // until every shard is known, so a publish to a shard known earlier could
            // overtake it (one shard still has a short window: see test_publish).
            for shard in 0..pubsub::SHARDS {
                ctx.call_service_shard_index(
                    pubsub::SERVICE_NAME,
                    shard,
                    "Subscribe",
                    args![id, subject],
                );
            }
        } else {
            ctx.call_service_shard_key(
                pubsub::SERVICE_NAME,
                subject,
                "Subscribe",
                args![id, subject],
            );
        }
    }
}

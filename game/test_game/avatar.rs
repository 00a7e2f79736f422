//! Avatar: the player (GoWorld's examples/test_game/Avatar.go), with its attributes and the
//! test RPCs the bots exercise.

use goworld_common::id::EntityId;
use goworld_game::args;
use goworld_game::attr::{ListAttr, MapAttr};
use goworld_game::entity::{AttrFlag::*, Ctx, Entity, Expose, TypeDesc};
use serde::{Deserialize, Serialize};

/// The player entity.
#[derive(Default, Serialize, Deserialize)]
pub struct Avatar;

impl Entity for Avatar {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.persistent(true)
            .use_aoi(100.0)
            .attr("name", &[AllClients, Persistent])
            .attr("level", &[AllClients, Persistent])
            .attr("prof", &[AllClients, Persistent])
            .attr("exp", &[Client, Persistent])
            .attr("mails", &[Client, Persistent])
            .attr("spaceKind", &[Persistent])
            .attr("lastMailID", &[Persistent])
            .attr("testListField", &[AllClients])
            .attr("enteringNilSpace", &[])
            .attr("testCallAllN", &[])
            .attr("complexAttr", &[Client])
            .method("TestListField", Expose::OwnClient, Avatar::test_list_field)
            .method(
                "TestComplexAttr",
                Expose::OwnClient,
                Avatar::test_complex_attr,
            )
            .method("GetSpaceID", Expose::Server, Avatar::get_space_id);
    }

    fn on_attrs_ready(&mut self, ctx: &mut Ctx) {
        let prof = 1 + ctx.rng().below(4) as i64;
        let kind = 1 + ctx.rng().below(100) as i64;
        let mut a = ctx.attrs.root();
        a.set_default_str("name", "无名");
        a.set_default_int("level", 1);
        a.set_default_int("exp", 0);
        a.set_default_int("prof", prof);
        a.set_default_int("spaceKind", kind);
        a.set_default_int("lastMailID", 0);
        a.set_default_map("mails", MapAttr::new());
        a.set_default_list("testListField", ListAttr::new());
        a.set_default_bool("enteringNilSpace", false);
    }

    fn on_client_connected(&mut self, ctx: &mut Ctx) {
        for key in ["spaceKind", "level", "prof"] {
            let v = ctx.attrs.as_map().get_int(key).to_string();
            ctx.set_client_filter_prop(key, &v);
        }
        ctx.set_client_filter_prop("online", "0");
        ctx.set_client_filter_prop("online", "1");
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
        let n = ctx
            .attrs
            .as_map()
            .get_list("testListField")
            .map_or(0, |l| l.len());
        let pick = ctx.rng().below(n as u64) as usize;
        let value = ctx.rng().below(100) as i64;
        let mut list = ctx
            .attrs
            .list("testListField")
            .expect("testListField is a list");
        if n > 0 && r1 < 0.3333333333 {
            let _ = list.pop_int();
        } else if n > 0 && r2 < 0.5 {
            let _ = list.set_int(pick, value);
        } else {
            list.append_int(value);
        }
        let items: Vec<i64> = ctx
            .attrs
            .as_map()
            .get_list("testListField")
            .map(|l| (0..l.len()).filter_map(|i| l.get_int(i).ok()).collect())
            .unwrap_or_default();
        ctx.call_client("OnTestListField", args![items]);
    }

    /// Builds `complexAttr.key1.key2 = [true, [{finalkey: "iamhere"}]]` step by step, then
    /// clears it, telling the client after each step.
    fn test_complex_attr(&mut self, ctx: &mut Ctx, (): ()) {
        {
            let mut complex = ctx.attrs.map("complexAttr").expect("map");
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
        let _ = ctx.attrs.map("complexAttr").expect("map").clear();
        ctx.call_client("OnTestComplexAttrClear", args![]);
    }

    /// Answers where this Avatar is: the caller gets `OnGetAvatarSpaceID(avatar, space)`.
    fn get_space_id(&mut self, ctx: &mut Ctx, (caller,): (EntityId,)) {
        let space = ctx.nil_space_id();
        ctx.call(caller, "OnGetAvatarSpaceID", args![ctx.id(), space]);
    }
}

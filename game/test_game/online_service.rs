//! OnlineService: who is online, with name and level (GoWorld's
//! examples/test_game/OnlineService.go). Avatars check in when created and out when
//! destroyed, sharded by their ID.

use std::collections::BTreeMap;

use goworld_common::id::EntityId;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// What the service knows of an online Avatar.
#[derive(Default, Serialize, Deserialize)]
struct AvatarInfo {
    name: String,
    level: i64,
}

/// The service entity (one per shard).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineService {
    avatars: BTreeMap<EntityId, AvatarInfo>,
    max_level: i64,
}

impl Entity for OnlineService {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("CheckIn", Expose::Server, OnlineService::check_in)
            .method("CheckOut", Expose::Server, OnlineService::check_out);
    }

    fn on_created(&mut self, ctx: &mut Ctx) {
        log::info!("Registering OnlineService {} ...", ctx.id());
    }
}

impl OnlineService {
    /// `CheckIn(avatarID, name, level)`: an Avatar is online.
    fn check_in(&mut self, ctx: &mut Ctx, (avatar, name, level): (EntityId, String, i64)) {
        self.avatars.insert(avatar, AvatarInfo { name, level });
        self.max_level = self.max_level.max(level);
        log::debug!(
            "OnlineService<{}> CHECK IN: {avatar} level {level}, total online {}",
            ctx.id(),
            self.avatars.len()
        );
    }

    /// `CheckOut(avatarID)`: an Avatar is gone.
    fn check_out(&mut self, ctx: &mut Ctx, (avatar,): (EntityId,)) {
        self.avatars.remove(&avatar);
        log::debug!(
            "OnlineService<{}> CHECK OUT: {avatar}, total online {}",
            ctx.id(),
            self.avatars.len()
        );
    }
}

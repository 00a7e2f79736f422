//! MySpace: test_game's space type (GoWorld's examples/test_game/MySpace.go). A new space
//! enables AOI 100, tells SpaceService it is loaded and spawns ten Monsters at the origin;
//! when its last Avatar leaves it checks every five minutes whether SpaceService lets it go,
//! and destroys itself once allowed.

use std::time::Duration;

use goworld_game::args;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// How often an empty space asks SpaceService whether it may go (GoWorld: 5 minutes).
pub const DESTROY_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// Monsters spawned in each new space.
pub const MONSTERS_PER_SPACE: usize = 10;

/// The space type.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MySpace {
    destroy_check_timer: Option<TimerId>,
}

impl Entity for MySpace {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method(
            "CheckForDestroy",
            Expose::Server,
            MySpace::check_for_destroy,
        )
        .method(
            "ConfirmRequestDestroy",
            Expose::Server,
            MySpace::confirm_request_destroy,
        );
    }

    fn on_space_created(&mut self, ctx: &mut Ctx) {
        ctx.enable_aoi(100.0);
        let kind = ctx.kind();
        let id = ctx.id();
        ctx.call_service_shard_key(
            "SpaceService",
            &kind.to_string(),
            "NotifySpaceLoaded",
            args![kind, id],
        );
        for _ in 0..MONSTERS_PER_SPACE {
            ctx.create_entity_in_space("Monster", Vec3::default());
        }
    }

    fn on_entity_enter_space(&mut self, ctx: &mut Ctx, entity: goworld_common::id::EntityId) {
        if ctx.type_of(&entity) == Some("Avatar") {
            if let Some(t) = self.destroy_check_timer.take() {
                ctx.cancel_timer(t);
            }
        }
    }

    fn on_entity_leave_space(&mut self, ctx: &mut Ctx, entity: goworld_common::id::EntityId) {
        if ctx.type_of(&entity) == Some("Avatar")
            && ctx.count_entities("Avatar") == 0
            && self.destroy_check_timer.is_none()
        {
            self.destroy_check_timer =
                Some(ctx.add_timer(DESTROY_CHECK_INTERVAL, "CheckForDestroy", args![]));
        }
    }
}

impl MySpace {
    fn check_for_destroy(&mut self, ctx: &mut Ctx, (): ()) {
        let avatars = ctx.count_entities("Avatar");
        if avatars != 0 {
            // GoWorld panics; the timer is cancelled when an Avatar enters, so this is a bug.
            log::warn!(
                "space {}: CheckForDestroy with {avatars} avatars in it",
                ctx.id()
            );
            return;
        }
        let kind = ctx.kind();
        let id = ctx.id();
        ctx.call_service_shard_key(
            "SpaceService",
            &kind.to_string(),
            "RequestDestroy",
            args![kind, id],
        );
    }

    fn confirm_request_destroy(&mut self, ctx: &mut Ctx, (ok,): (bool,)) {
        if !ok {
            return;
        }
        let avatars = ctx.count_entities("Avatar");
        if avatars != 0 {
            // An Avatar entered after the check: keep the space (GoWorld panics here).
            log::info!(
                "space {}: destroy confirmed but {avatars} avatars entered meanwhile; kept",
                ctx.id()
            );
            return;
        }
        ctx.destroy();
    }
}

//! SpaceService: finds or creates the space of a kind for an Avatar (GoWorld's
//! examples/test_game/SpaceService.go), sharded by kind.
//!
//! GoWorld's behaviour is kept, quirks included, so the workload matches: a space is chosen
//! among those "with fewer than 100 avatars", but the avatar count is never updated, so any
//! known space of the kind is chosen (the first here; GoWorld's map order is random), and
//! every request for a kind with no known space creates another space anywhere. A loaded
//! space answers every pending request of its kind.

use std::collections::BTreeMap;

use goworld_common::id::EntityId;
use goworld_game::args;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// GoWorld's `_MAX_AVATAR_COUNT_PER_SPACE`.
pub const MAX_AVATARS_PER_SPACE: i64 = 100;

/// How long after its last enter a space may be destroyed (seconds).
pub const IDLE_BEFORE_DESTROY_SECS: u32 = 60;

#[derive(Default, Serialize, Deserialize)]
struct SpaceInfo {
    last_enter: u32,
    /// Never updated, as in GoWorld.
    avatars: i64,
}

/// The service entity (3 shards).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SpaceService {
    kinds: BTreeMap<i64, BTreeMap<EntityId, SpaceInfo>>,
    pending: Vec<(EntityId, i64)>,
}

impl Entity for SpaceService {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("EnterSpace", Expose::Server, SpaceService::enter_space)
            .method(
                "NotifySpaceLoaded",
                Expose::Server,
                SpaceService::notify_space_loaded,
            )
            .method(
                "RequestDestroy",
                Expose::Server,
                SpaceService::request_destroy,
            )
            .method("SpaceGone", Expose::Server, SpaceService::space_gone);
    }
}

impl SpaceService {
    /// An Avatar wants a space of `kind`.
    fn enter_space(&mut self, ctx: &mut Ctx, (avatar, kind): (EntityId, i64)) {
        let now = ctx.unix_secs();
        let chosen = self.kinds.get_mut(&kind).and_then(|spaces| {
            let mut best: Option<(&EntityId, &mut SpaceInfo)> = None;
            for (id, info) in spaces.iter_mut() {
                if info.avatars >= MAX_AVATARS_PER_SPACE {
                    continue;
                }
                if best.as_ref().is_none_or(|(_, b)| b.avatars < info.avatars) {
                    best = Some((id, info));
                }
            }
            best.map(|(id, info)| {
                info.last_enter = now;
                *id
            })
        });
        match chosen {
            Some(space) => ctx.call(avatar, "DoEnterSpace", args![kind, space]),
            None => {
                self.pending.push((avatar, kind));
                ctx.create_space_anywhere(kind);
            }
        }
    }

    /// A space of `kind` is ready: remember it and send the waiting Avatars there.
    fn notify_space_loaded(&mut self, ctx: &mut Ctx, (kind, space): (i64, EntityId)) {
        let now = ctx.unix_secs();
        self.kinds.entry(kind).or_default().insert(
            space,
            SpaceInfo {
                last_enter: now,
                avatars: 0,
            },
        );
        let (ready, waiting): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(_, k)| *k == kind);
        self.pending = waiting;
        for (avatar, _) in ready {
            ctx.call(avatar, "DoEnterSpace", args![kind, space]);
        }
    }

    /// An Avatar could not enter `space`: it no longer exists (its game died). Forget it.
    fn space_gone(&mut self, _ctx: &mut Ctx, (kind, space): (i64, EntityId)) {
        if let Some(spaces) = self.kinds.get_mut(&kind) {
            spaces.remove(&space);
        }
    }

    /// An empty space asks to go: yes if unknown or idle for a minute.
    fn request_destroy(&mut self, ctx: &mut Ctx, (kind, space): (i64, EntityId)) {
        let now = ctx.unix_secs();
        let spaces = self.kinds.entry(kind).or_default();
        let allow = match spaces.get(&space) {
            None => true,
            Some(info) => now > info.last_enter + IDLE_BEFORE_DESTROY_SECS,
        };
        if allow {
            spaces.remove(&space);
            ctx.call(space, "ConfirmRequestDestroy", args![true]);
        }
    }
}

//! Guestbook: a service (one entity per shard, created by the engine when the deployment is
//! ready) that remembers every name greeted and tells the caller how many there are.

use std::collections::BTreeSet;

use goworld_common::id::EntityId;
use goworld_game::args;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// The service entity. Plain struct fields are fine for state the client never sees.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Guestbook {
    names: BTreeSet<String>,
}

impl Entity for Guestbook {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("Sign", Expose::Server, Guestbook::sign);
    }

    fn on_created(&mut self, ctx: &mut Ctx) {
        log::info!("Guestbook {} is open", ctx.id());
    }
}

impl Guestbook {
    /// `Sign(greeter, name)`: records `name`, answers `OnSigned(guests)` to the Greeter.
    fn sign(&mut self, ctx: &mut Ctx, (greeter, name): (EntityId, String)) {
        self.names.insert(name);
        let guests = self.names.len() as i64;
        ctx.call(greeter, "OnSigned", args![guests]);
    }
}

//! Greeter: the entity each client gets when it connects (the config's `boot_entity`).
//! `Hello(name)` from the client counts a visit in the `visits` attribute, which the client
//! sees, answers `OnHello(greeting, visits)`, and signs the name into the Guestbook service,
//! whose answer the Greeter passes on to the client as `OnGuestbook(guests)`.

use goworld_game::args;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// How many times this player said hello. Declared once, with its type and who sees it
/// (`client`: its own client); the engine keeps it and sends every change to the client.
pub const VISITS: Attr<i64> = Attr::client("visits");

/// The client's player entity. Its state is the `visits` attribute, which the engine keeps
/// and syncs to the client, so the struct itself has no fields.
#[derive(Default, Serialize, Deserialize)]
pub struct Greeter;

impl Entity for Greeter {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(VISITS)
            .method("Hello", Expose::OwnClient, Greeter::hello)
            .method("OnSigned", Expose::Server, Greeter::on_signed);
    }

    /// Attributes are assigned: a new Greeter starts with no visits.
    fn on_attrs_ready(&mut self, ctx: &mut Ctx) {
        ctx.set_default(VISITS, 0);
    }

    /// The client left: nothing to keep.
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        ctx.destroy();
    }
}

impl Greeter {
    /// `Hello(name)`, called by the client.
    fn hello(&mut self, ctx: &mut Ctx, (name,): (String,)) {
        let visits = ctx.get(VISITS) + 1;
        ctx.set(VISITS, visits);
        ctx.call_client("OnHello", args![format!("Hello, {name}!"), visits]);
        let me = ctx.id();
        ctx.call_service_any("Guestbook", "Sign", args![me, name]);
    }

    /// `OnSigned(guests)`, called by the Guestbook: how many names it holds now.
    fn on_signed(&mut self, ctx: &mut Ctx, (guests,): (i64,)) {
        ctx.call_client("OnGuestbook", args![guests]);
    }
}

//! tutorial: the small game that docs/TUTORIAL.md builds step by step. Each client gets a
//! Greeter; `Hello(name)` counts the client's visits and signs the Guestbook service.
//!
//! `tutorial -gid N [-configfile goworld.ini] [-log level]`.

mod greeter;
mod guestbook;

use goworld_game::prelude::*;

fn main() {
    let mut types = Registry::new();
    let registered = types
        .register::<greeter::Greeter>("Greeter")
        .and_then(|()| types.register_service::<guestbook::Guestbook>("Guestbook", 1));
    if let Err(e) = registered {
        goworld_common::process::fail(&format!("tutorial: {e}"));
    }
    goworld_game::run::main("tutorial", types);
}

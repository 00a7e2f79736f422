//! test_game: GoWorld's example game, the acceptance suite's server side.
//! `test_game -gid N [-configfile goworld.ini] [-log level] [-restore]`.

mod account;
mod avatar;

use goworld_game::entity::Registry;

fn main() {
    let mut types = Registry::new();
    let registered = types
        .register::<account::Account>("Account")
        .and_then(|()| types.register::<avatar::Avatar>("Avatar"));
    if let Err(e) = registered {
        goworld_common::process::fail(&format!("test_game: {e}"));
    }
    goworld_game::run::main("test_game", types);
}

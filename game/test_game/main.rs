//! test_game: GoWorld's example game, the acceptance suite's server side.
//! `test_game -gid N [-configfile goworld.ini] [-log level] [-restore]`.
//! The game itself (its entity types and hooks) is the `test_game` library.

fn main() {
    match test_game::registry() {
        Ok(types) => goworld_game::run::main("test_game", types),
        Err(e) => goworld_common::process::fail(&format!("test_game: {e}")),
    }
}

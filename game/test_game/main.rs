//! test_game: GoWorld's example game, the acceptance suite's server side.
//! `test_game -gid N [-configfile goworld.ini] [-log level] [-restore]`.

fn main() {
    goworld_game::run::main("test_game");
}

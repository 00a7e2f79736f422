//! `gate -gid N [-configfile goworld.ini] [-log level]`: runs one gate.

fn main() {
    goworld_gate::run::main();
}

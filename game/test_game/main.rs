//! test_game: GoWorld's example game, the acceptance suite's server side.
//! `test_game -gid N [-configfile goworld.ini] [-log level] [-restore]`.

mod account;
mod avatar;
mod mail_service;
mod monster;
mod my_space;
mod online_service;
mod pubsub;
mod space_service;

use goworld_game::entity::Registry;

fn main() {
    let mut types = Registry::new();
    let registered = types
        .register::<account::Account>("Account")
        .and_then(|()| types.register::<avatar::Avatar>("Avatar"))
        .and_then(|()| types.register::<monster::Monster>("Monster"))
        .and_then(|()| types.register::<monster::AOITester>("AOITester"))
        .and_then(|()| types.register_space::<my_space::MySpace>())
        .and_then(|()| types.register_service::<space_service::SpaceService>("SpaceService", 3))
        .and_then(|()| types.register_service::<online_service::OnlineService>("OnlineService", 3))
        // GoWorld: "todo: implement sharding for MailService. Currently, MailService only
        // allows 1 shard" (mail IDs come from one counter).
        .and_then(|()| types.register_service::<mail_service::MailService>("MailService", 1))
        .and_then(|()| {
            types.register_service::<pubsub::PublishSubscribeService>(
                pubsub::SERVICE_NAME,
                pubsub::SHARDS,
            )
        });
    if let Err(e) = registered {
        goworld_common::process::fail(&format!("test_game: {e}"));
    }
    goworld_game::run::main("test_game", types);
}

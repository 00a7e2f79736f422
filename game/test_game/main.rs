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

use std::time::Duration;

use goworld_game::entity::Registry;
use goworld_game::global::GameCtx;

/// The services test_game runs; the game calls its nil-space test once all are up.
const SERVICES: [&str; 4] = [
    "OnlineService",
    "SpaceService",
    "MailService",
    pubsub::SERVICE_NAME,
];

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
    let registered = registered
        .and_then(|()| {
            types.nil_space_method(
                "TestCallNilSpaces",
                goworld_game::global::nil_space_method(test_call_nil_spaces),
            )
        })
        .and_then(|()| {
            types.nil_space_method(
                pubsub::RESUBSCRIBE,
                goworld_game::global::nil_space_method(resubscribe_avatars),
            )
        });
    types.on_game_ready(|ctx| {
        // The swap script rebuilds the binary with a new tag, so a restored game visibly
        // runs other code than the one that froze.
        log::info!(
            "test_game build {} ready on game{}",
            option_env!("GOWORLD_BUILD_TAG").unwrap_or("dev"),
            ctx.game_id()
        );
        ctx.add_callback(Duration::from_secs(1), check_server_started);
    });
    if let Err(e) = registered {
        goworld_common::process::fail(&format!("test_game: {e}"));
    }
    goworld_game::run::main("test_game", types);
}

/// GoWorld's MySpace.OnGameReady: once every service has its entities, call
/// TestCallNilSpaces on every game's nil space (each logs it); until then, check every second.
fn check_server_started(ctx: &mut GameCtx) {
    if SERVICES.iter().all(|s| ctx.services_ready(s)) {
        ctx.call_nil_spaces(
            "TestCallNilSpaces",
            goworld_game::args![1i64, "abc", true, 2.3f64],
        );
    } else {
        ctx.add_callback(Duration::from_secs(1), check_server_started);
    }
}

/// A PublishSubscribeService shard was (re-)created: every Avatar here subscribes again.
fn resubscribe_avatars(ctx: &mut GameCtx, (): ()) {
    let avatars: Vec<_> = (ctx.entity_ids().into_iter())
        .filter(|id| ctx.type_of(id) == Some("Avatar"))
        .collect();
    if !avatars.is_empty() {
        log::info!(
            "{} shard created: {} Avatars subscribe again",
            pubsub::SERVICE_NAME,
            avatars.len()
        );
    }
    for id in avatars {
        ctx.call(id, "Resubscribe", goworld_game::args![]);
    }
}

/// Logs that CallNilSpaces reached this game (GoWorld's `TestCallNilSpaces`).
fn test_call_nil_spaces(ctx: &mut GameCtx, (a, b, c, d): (i64, String, bool, f64)) {
    log::info!(
        "TestCallNilSpaces {a} {b} {c} {d}: CallNilSpaces works in game {}",
        ctx.game_id()
    );
}

//! test_game: GoWorld's example game, the acceptance suite's server side, as a library.
//! [`registry`] builds exactly the game the `test_game` binary runs (main.rs hands it to
//! `goworld_game::run::main`); tests use it, or the entity types alone, as a crate.

pub mod account;
pub mod avatar;
pub mod mail_service;
pub mod monster;
pub mod my_space;
pub mod online_service;
pub mod pubsub;
pub mod space_service;

use std::time::Duration;

use goworld_game::prelude::*;

/// The services test_game runs; the game calls its nil-space test once all are up.
const SERVICES: [&str; 4] = [
    "OnlineService",
    "SpaceService",
    "MailService",
    pubsub::SERVICE_NAME,
];

/// test_game's entity types, services, nil-space methods and game-ready hook; an error names
/// the registration that failed.
pub fn registry() -> Result<Registry, RegisterError> {
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
                goworld_game::api::nil_space_method(test_call_nil_spaces),
            )
        })
        .and_then(|()| {
            types.nil_space_method(
                pubsub::RESUBSCRIBE,
                goworld_game::api::nil_space_method(resubscribe_avatars),
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
    registered.map(|()| types)
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

//! Account: the boot entity every client gets; logs in and hands the client to its Avatar
//! (GoWorld's examples/test_game/Account.go).

use goworld_common::id::EntityId;
use goworld_game::args;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// The Avatar a login is heading for on another game (carried by the migration).
const LOGIN_AVATAR_ID: Attr<String> = Attr::server("loginAvatarID");

/// The boot entity of a client.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Account {
    username: String,
    logging_in: bool,
}

impl Entity for Account {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.attr(LOGIN_AVATAR_ID)
            .method("Login", Expose::OwnClient, Account::login)
            .method(
                "OnGetAvatarSpaceID",
                Expose::Server,
                Account::on_get_avatar_space_id,
            )
            .method(
                "RetryLoginToAvatar",
                Expose::Server,
                Account::retry_login_to_avatar,
            );
    }

    fn on_migrate_in(&mut self, ctx: &mut Ctx) {
        self.retry_or_give(ctx);
    }

    /// The client was given to the Avatar (or left): the Account has done its job.
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        ctx.destroy();
    }
}

impl Account {
    /// `Login(username, password)` from the client. The avatar ID is kept in the KVDB under
    /// the username; a new user gets a new Avatar on this game.
    fn login(&mut self, ctx: &mut Ctx, (username, password): (String, String)) {
        if self.logging_in {
            log::warn!("{}<{}> is already logging in", ctx.type_name(), ctx.id());
            return;
        }
        if password != "123456" {
            ctx.call_client("OnLogin", args![false]);
            return;
        }
        self.logging_in = true;
        self.username = username.clone();
        ctx.call_client("OnLogin", args![true]);
        ctx.kvdb_get::<Account>(&username, Account::on_avatar_id);
    }

    fn on_avatar_id(&mut self, ctx: &mut Ctx, result: KvdbResult) {
        let avatar = match result {
            Ok(Some(id)) => EntityId::parse(&id),
            Ok(None) => None,
            Err(e) => {
                log::warn!(
                    "{}: cannot read the avatar of {}: {e}",
                    ctx.id(),
                    self.username
                );
                self.logging_in = false;
                return;
            }
        };
        match avatar {
            None => {
                let avatar = ctx.create_entity_locally("Avatar");
                ctx.kvdb_put::<Account>(&self.username, &avatar.to_text(), None);
                ctx.give_client_to(avatar);
            }
            Some(avatar) => {
                ctx.load_entity_anywhere("Avatar", avatar);
                ctx.call(avatar, "GetSpaceID", args![ctx.id()]);
            }
        }
    }

    /// The Avatar answered where it is: here, it gets the client; on another game, this
    /// Account moves there by entering the Avatar's space, and hands over on arrival.
    fn on_get_avatar_space_id(&mut self, ctx: &mut Ctx, (avatar, space): (EntityId, EntityId)) {
        if ctx.is_local(&avatar) {
            ctx.give_client_to(avatar);
            return;
        }
        ctx.set(LOGIN_AVATAR_ID, avatar.to_text());
        ctx.enter_space(space, Vec3::default());
    }

    /// Arrived on the Avatar's game: hand the client over, or look for the Avatar again
    /// after a random 0-3 s if it moved meanwhile.
    fn retry_or_give(&mut self, ctx: &mut Ctx) {
        let Some(avatar) = EntityId::parse(&ctx.get(LOGIN_AVATAR_ID)) else {
            log::warn!("{}: migrated in without loginAvatarID", ctx.id());
            return;
        };
        if ctx.is_local(&avatar) {
            ctx.give_client_to(avatar);
        } else {
            let delay = std::time::Duration::from_millis(ctx.rng().below(3000));
            ctx.add_callback(delay, "RetryLoginToAvatar", args![avatar]);
        }
    }

    fn retry_login_to_avatar(&mut self, ctx: &mut Ctx, (avatar,): (EntityId,)) {
        ctx.load_entity_anywhere("Avatar", avatar);
        ctx.call(avatar, "GetSpaceID", args![ctx.id()]);
    }
}

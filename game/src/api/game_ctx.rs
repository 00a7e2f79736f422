//! Game-wide code that belongs to no entity: start-up work when the deployment is ready,
//! global timers and callbacks, posted work, crontab entries, and methods called on every
//! game's nil space.
//!
//! [`GameCtx`] is what such code gets. It borrows no entity, so what it asks of the world
//! ([`Act`]) runs at once, through the same runner as an entity's queued actions: it can create
//! and call entities, look them up, and schedule more global work. Global timers and posted
//! callbacks are closures: they cannot travel with a hot swap, so start-up code (the
//! game-ready hook) must create them again after a restore.

use std::time::{Duration, Instant};

use goworld_common::id::{nil_space_id, EntityId};
use goworld_common::proto::Args;

use super::{Act, Action, WorldView, MIN_TIMER_INTERVAL};
use crate::args::{ArgError, FromArgs};
use crate::crontab::{CronError, CronId, CronSpec};

/// A global timer or callback.
pub type GlobalFn = Box<dyn FnMut(&mut GameCtx)>;
/// Posted work: runs once, after the current event, in the same loop iteration.
pub type PostFn = Box<dyn FnOnce(&mut GameCtx)>;
/// The game-ready hook.
pub type ReadyFn = Box<dyn FnMut(&mut GameCtx)>;
/// A nil-space method: called on every game by [`Act::call_nil_spaces`].
pub type NilSpaceFn = Box<dyn Fn(&mut GameCtx, &Args) -> Result<(), ArgError>>;

/// Identifies a global timer, for [`GameCtx::cancel_timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GlobalTimerId(pub(crate) goworld_common::timers::TimerId);

/// What [`GameCtx`] needs of the engine (the world implements it): the view, the runner for
/// actions, and the game-wide schedules.
pub(crate) trait Engine: WorldView {
    /// Runs `action` now, and the local calls it causes.
    fn run(&mut self, action: Action);
    /// A new entity ID.
    fn new_entity_id(&mut self) -> EntityId;
    /// The time of the event being handled.
    fn now(&self) -> Instant;
    /// Arms a global timer: first after `delay`, then every `repeat` if given.
    fn add_global_timer(
        &mut self,
        delay: Duration,
        repeat: Option<Duration>,
        f: GlobalFn,
    ) -> GlobalTimerId;
    /// Cancels a global timer.
    fn cancel_global_timer(&mut self, id: GlobalTimerId);
    /// Queues posted work.
    fn post(&mut self, f: PostFn);
    /// Registers a crontab entry.
    fn register_crontab(&mut self, spec: CronSpec, f: GlobalFn) -> CronId;
    /// Removes a crontab entry.
    fn unregister_crontab(&mut self, id: CronId) -> bool;
    /// The engine as a plain view.
    fn as_view(&self) -> &dyn WorldView;
}

/// The game-wide context.
pub struct GameCtx<'a> {
    pub(crate) eng: &'a mut dyn Engine,
}

impl Act for GameCtx<'_> {
    /// Runs the action at once.
    #[allow(private_interfaces)]
    fn emit(&mut self, a: Action) {
        self.eng.run(a);
    }

    fn new_entity_id(&mut self) -> EntityId {
        self.eng.new_entity_id()
    }

    fn view(&self) -> &dyn WorldView {
        self.eng.as_view()
    }

    fn now(&self) -> Instant {
        self.eng.now()
    }
}

impl GameCtx<'_> {
    /// The nil space of game `game`.
    pub fn nil_space_id(&self, game: u16) -> EntityId {
        nil_space_id(game)
    }

    /// True if entity `id` lives on this game.
    pub fn exists(&self, id: &EntityId) -> bool {
        self.eng.exists(id)
    }

    /// IDs of this game's entities.
    pub fn entity_ids(&self) -> Vec<EntityId> {
        self.eng.entity_ids()
    }

    /// The type of entity `id` on this game.
    pub fn type_of(&self, id: &EntityId) -> Option<&str> {
        self.eng.type_of(id)
    }

    /// Runs `f` when the local time matches (GoWorld's `RegisterCrontab`: minute, hour, day,
    /// month, day of week; `-1` is any, `-n` is "divisible by n"); checked once a minute.
    /// Returns an ID for [`GameCtx::unregister_crontab`], or an error naming a bad field.
    pub fn register_crontab(
        &mut self,
        minute: i32,
        hour: i32,
        day: i32,
        month: i32,
        dayofweek: i32,
        f: impl FnMut(&mut GameCtx) + 'static,
    ) -> Result<CronId, CronError> {
        let spec = CronSpec::new(minute, hour, day, month, dayofweek)?;
        Ok(self.eng.register_crontab(spec, Box::new(f)))
    }

    /// Removes a crontab entry (from the next check on).
    pub fn unregister_crontab(&mut self, id: CronId) -> bool {
        self.eng.unregister_crontab(id)
    }

    /// Runs `f` every `interval` (at least 10 ms) until cancelled.
    pub fn add_timer(
        &mut self,
        interval: Duration,
        f: impl FnMut(&mut GameCtx) + 'static,
    ) -> GlobalTimerId {
        let interval = interval.max(MIN_TIMER_INTERVAL);
        self.eng
            .add_global_timer(interval, Some(interval), Box::new(f))
    }

    /// Runs `f` once after `delay`.
    pub fn add_callback(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut GameCtx) + 'static,
    ) -> GlobalTimerId {
        let mut f = Some(f);
        let once: GlobalFn = Box::new(move |ctx| {
            if let Some(f) = f.take() {
                f(ctx)
            }
        });
        self.eng.add_global_timer(delay, None, once)
    }

    /// Cancels a global timer (a fired callback or an unknown ID is ignored).
    pub fn cancel_timer(&mut self, id: GlobalTimerId) {
        self.eng.cancel_global_timer(id);
    }

    /// Runs `f` after the current event, in this loop iteration (GoWorld's `Post`).
    pub fn post(&mut self, f: impl FnOnce(&mut GameCtx) + 'static) {
        self.eng.post(Box::new(f));
    }
}

/// Registers a typed nil-space method: `f` gets the decoded arguments `A`.
pub fn nil_space_method<A: FromArgs + 'static>(f: fn(&mut GameCtx, A)) -> NilSpaceFn {
    Box::new(move |ctx, args| {
        f(ctx, A::from_args(args)?);
        Ok(())
    })
}

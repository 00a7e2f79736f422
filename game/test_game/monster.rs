//! Monster and AOITester: AOI entities with a name and no logic (GoWorld's
//! examples/test_game/Monster.go and AOITester.go). MySpace spawns ten Monsters at the origin;
//! Avatar.TestAOI creates an AOITester next to its avatar for a moment.

use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// The name clients see (both types declare it; neither sets it, as in GoWorld).
pub const NAME: Attr<String> = Attr::all_clients("name");

/// Ten per space, at the origin.
#[derive(Default, Serialize, Deserialize)]
pub struct Monster;

impl Entity for Monster {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.use_aoi(100.0).attr(NAME);
    }
}

/// Made by Avatar.TestAOI to check that an AOI create reaches the client before a call
/// sent after it.
#[derive(Default, Serialize, Deserialize)]
pub struct AOITester;

impl Entity for AOITester {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.use_aoi(100.0).attr(NAME);
    }
}

//! Typed attribute keys: an attribute is declared once, as a constant with its name, value
//! type and flags, then registered by [`TypeDesc::attr`](super::TypeDesc::attr) and read and
//! written through the same constant.
//!
//! ```
//! use goworld_game::prelude::*;
//!
//! /// How often the player said hello; its client sees it.
//! const VISITS: Attr<i64> = Attr::client("visits");
//! /// Saved with the player, seen by no client.
//! const SECRET: Attr<String> = Attr::server("secret").persistent();
//! # let _ = (VISITS, SECRET);
//! ```
//!
//! The wire names stay GoWorld's strings; the constant is what the compiler checks. A root
//! attribute written without a declaration (a typo through the untyped [`Attrs`]
//! cursor) is an error: logged once per type and name, and a panic in debug builds.
//!
//! [`Attrs`]: crate::attr::Attrs

use std::marker::PhantomData;

use crate::attr::{AttrValue, ListAttr, MapAttr};

/// How an attribute is shown to clients and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttrFlags {
    /// Sent to the entity's own client.
    pub client: bool,
    /// Sent to its own client and the clients of entities that see it (implies `client`).
    pub all_clients: bool,
    /// Saved to storage (persistent types only).
    pub persistent: bool,
}

/// A root attribute of an entity type: its name, the type of its value and its flags.
pub struct Attr<T> {
    name: &'static str,
    flags: AttrFlags,
    _value: PhantomData<fn() -> T>,
}

// Not derived: `T` need not be `Clone` for the key to be.
impl<T> Clone for Attr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Attr<T> {}

impl<T> std::fmt::Debug for Attr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Attr({:?}, {:?})", self.name, self.flags)
    }
}

impl<T: AttrType> Attr<T> {
    const fn with(name: &'static str, client: bool, all_clients: bool) -> Self {
        Attr {
            name,
            flags: AttrFlags {
                client,
                all_clients,
                persistent: false,
            },
            _value: PhantomData,
        }
    }

    /// Kept on the server only (migrated and hot-swapped with the entity, never sent).
    pub const fn server(name: &'static str) -> Self {
        Self::with(name, false, false)
    }

    /// Sent to the entity's own client (GoWorld's `Client` flag).
    pub const fn client(name: &'static str) -> Self {
        Self::with(name, true, false)
    }

    /// Sent to the own client and to the clients of entities that see it (`AllClients`).
    pub const fn all_clients(name: &'static str) -> Self {
        Self::with(name, true, true)
    }

    /// Also saved to storage (`Persistent`; the type must be persistent).
    pub const fn persistent(mut self) -> Self {
        self.flags.persistent = true;
        self
    }

    /// The attribute's name on the wire and in storage.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Its flags.
    pub const fn flags(&self) -> AttrFlags {
        self.flags
    }
}

/// A type an attribute can hold: GoWorld's uniformed values (`i64`, `f64`, `bool`,
/// `String`) and the nested containers.
pub trait AttrType: Default + Into<AttrValue> {
    /// True for `f64`: a saved integer is loaded as a float.
    const FLOAT: bool = false;
    /// True for `i64`: a saved whole float is loaded as an integer.
    const INT: bool = false;
    /// The value, if `v` holds this type (an integer is read as a float too).
    fn from_attr(v: &AttrValue) -> Option<Self>;
}

impl AttrType for i64 {
    const INT: bool = true;
    fn from_attr(v: &AttrValue) -> Option<Self> {
        v.as_int()
    }
}

impl AttrType for f64 {
    const FLOAT: bool = true;
    fn from_attr(v: &AttrValue) -> Option<Self> {
        v.as_float()
    }
}

impl AttrType for bool {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        v.as_bool()
    }
}

impl AttrType for String {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        v.as_str().map(str::to_string)
    }
}

impl AttrType for MapAttr {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        v.as_map().cloned()
    }
}

impl AttrType for ListAttr {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        v.as_list().cloned()
    }
}

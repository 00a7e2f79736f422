//! MailService: mails between Avatars, kept in the KVDB (GoWorld's
//! examples/test_game/MailService.go).
//!
//! * `MailService:lastMailID` holds the last mail ID (read with GetOrPut when the service is
//!   created, written after each new ID).
//! * A mail is stored at `MailService:mail$<targetID>$<%010d mailID>`, so one GetRange reads
//!   an Avatar's mails after a given ID, in ID order.
//! * `SendMail(senderID, senderName, targetID, data)` stores the mail, then calls
//!   `OnSendMail(true)` on the sender and `NotifyReceiveMail()` on the target.
//! * `GetMails(avatarID, lastMailID)` answers `OnGetMails(lastMailID, [[mailID, mail]...])`.
//!
//! A mail is GoWorld's msgpack map `{senderID, senderName, targetID, data}`. GoWorld keeps
//! those bytes in a Go string; our KVDB values (and string attributes) are UTF-8, so the mail
//! is stored as the lowercase hex of the msgpack bytes.
//!
//! Fixed from GoWorld: its `parseMailKey` still uses the offsets of the old `mail$<id>$<n>`
//! key, although keys now start with `MailService:mail$`, so it read the entity ID from the
//! wrong place and failed to parse the mail ID (GetMails panicked; test_client's DoGetMails
//! was disabled). [`parse_mail_key`] strips the real prefix.
//!
//! KVDB callbacks here are plain functions without captures; the requests they answer wait
//! in FIFO queues (the KVDB answers in request order).

use std::collections::VecDeque;

use goworld_common::id::EntityId;
use goworld_common::msgpack::Value;
use goworld_game::args;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// The largest mail ID (GoWorld's `END_MAIL_ID`).
pub const END_MAIL_ID: i64 = 9_999_999_999;
const LAST_MAIL_ID_KEY: &str = "MailService:lastMailID";
const MAIL_KEY_PREFIX: &str = "MailService:mail$";

/// A mail waiting for the last mail ID to be loaded.
#[derive(Default, Serialize, Deserialize)]
struct Outgoing {
    sender: EntityId,
    sender_name: String,
    target: EntityId,
    /// The msgpack encoding of the mail's data.
    data: Vec<u8>,
}

/// The service entity (1 shard).
#[derive(Serialize, Deserialize)]
#[serde(default)]
pub struct MailService {
    /// -1 until loaded from the KVDB.
    last_mail_id: i64,
    /// Mails sent before `last_mail_id` was loaded.
    waiting: Vec<Outgoing>,
    /// (sender, target) of each mail being written, in request order.
    puts: VecDeque<(EntityId, EntityId)>,
    /// (avatar, lastMailID) of each GetMails being read, in request order.
    ranges: VecDeque<(EntityId, i64)>,
}

impl Default for MailService {
    fn default() -> Self {
        MailService {
            last_mail_id: -1,
            waiting: Vec::new(),
            puts: VecDeque::new(),
            ranges: VecDeque::new(),
        }
    }
}

impl Entity for MailService {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("SendMail", Expose::Server, MailService::send_mail)
            .method("GetMails", Expose::Server, MailService::get_mails);
    }

    fn on_created(&mut self, ctx: &mut Ctx) {
        log::info!("Registering MailService {} ...", ctx.id());
        ctx.kvdb_get_or_put::<MailService>(LAST_MAIL_ID_KEY, "0", MailService::on_last_mail_id);
    }
}

/// `MailService:mail$<target>$<%010d id>`.
pub fn mail_key(mail_id: i64, target: &EntityId) -> String {
    format!("{MAIL_KEY_PREFIX}{target}${mail_id:010}")
}

/// The target and mail ID of a mail key; `None` if it is not one.
pub fn parse_mail_key(key: &str) -> Option<(EntityId, i64)> {
    let rest = key.strip_prefix(MAIL_KEY_PREFIX)?;
    let (eid, id) = rest.split_once('$')?;
    Some((EntityId::parse(eid)?, id.parse().ok()?))
}

/// The lowercase hex of `bytes` (a mail is about 15 KB: a formatter call per byte cost more
/// than storing it).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)]);
        s.push(DIGITS[usize::from(b & 15)]);
    }
    String::from_utf8(s).expect("hex digits are ASCII")
}

/// GoWorld's packed mail: `{senderID, senderName, targetID, data}` in msgpack, as hex.
fn pack_mail(m: &Outgoing) -> String {
    let data = goworld_common::msgpack::decode_exact(&m.data).unwrap_or(Value::Nil);
    let mail = Value::Map(vec![
        (
            Value::Str("senderID".into()),
            Value::Str(m.sender.to_text()),
        ),
        (
            Value::Str("senderName".into()),
            Value::Str(m.sender_name.clone()),
        ),
        (
            Value::Str("targetID".into()),
            Value::Str(m.target.to_text()),
        ),
        (Value::Str("data".into()), data),
    ]);
    hex(&mail.to_bytes())
}

impl MailService {
    fn on_last_mail_id(&mut self, ctx: &mut Ctx, r: KvdbResult) {
        match r {
            Ok(None) => self.last_mail_id = 0,
            Ok(Some(v)) => match v.trim().parse::<i64>() {
                Ok(n) if n >= 0 => self.last_mail_id = n,
                _ => {
                    log::warn!(
                        "MailService: {LAST_MAIL_ID_KEY} is invalid: {v:?}; mails stay queued"
                    );
                    return;
                }
            },
            Err(e) => {
                log::warn!("MailService: cannot read {LAST_MAIL_ID_KEY}: {e}; mails stay queued");
                return;
            }
        }
        log::info!("MailService: last mail ID {}", self.last_mail_id);
        for m in std::mem::take(&mut self.waiting) {
            self.store(ctx, m);
        }
    }

    /// `SendMail(senderID, senderName, targetID, data)`.
    fn send_mail(
        &mut self,
        ctx: &mut Ctx,
        (sender, sender_name, target, data): (EntityId, String, EntityId, Value),
    ) {
        let m = Outgoing {
            sender,
            sender_name,
            target,
            data: data.to_bytes(),
        };
        if self.last_mail_id < 0 {
            // GoWorld panics here; wait for the ID instead.
            self.waiting.push(m);
            return;
        }
        self.store(ctx, m);
    }

    fn store(&mut self, ctx: &mut Ctx, m: Outgoing) {
        self.last_mail_id += 1;
        let id = self.last_mail_id;
        ctx.kvdb_put::<MailService>(LAST_MAIL_ID_KEY, &id.to_string(), None);
        let key = mail_key(id, &m.target);
        log::debug!("MailService.SendMail: {} -> {}: {key}", m.sender, m.target);
        self.puts.push_back((m.sender, m.target));
        ctx.kvdb_put::<MailService>(&key, &pack_mail(&m), Some(MailService::on_mail_put));
    }

    fn on_mail_put(&mut self, ctx: &mut Ctx, r: KvdbResult) {
        let Some((sender, target)) = self.puts.pop_front() else {
            log::warn!("MailService: a mail write finished that was not asked for");
            return;
        };
        match r {
            Ok(_) => {
                ctx.call(sender, "OnSendMail", args![true]);
                ctx.call(target, "NotifyReceiveMail", args![]);
            }
            Err(e) => {
                log::warn!("MailService: cannot store a mail from {sender} to {target}: {e}");
                ctx.call(sender, "OnSendMail", args![false]);
            }
        }
    }

    /// `GetMails(avatarID, lastMailID)`: the Avatar's mails after `lastMailID`.
    fn get_mails(&mut self, ctx: &mut Ctx, (avatar, last): (EntityId, i64)) {
        let begin = mail_key(last + 1, &avatar);
        let end = mail_key(END_MAIL_ID, &avatar);
        self.ranges.push_back((avatar, last));
        ctx.kvdb_get_range::<MailService>(&begin, &end, MailService::on_mails);
    }

    fn on_mails(&mut self, ctx: &mut Ctx, r: KvdbRangeResult) {
        let Some((avatar, last)) = self.ranges.pop_front() else {
            log::warn!("MailService: a mail read finished that was not asked for");
            return;
        };
        let items = match r {
            Ok(items) => items,
            Err(e) => {
                // GoWorld panics; the Avatar gets no answer either way.
                log::warn!("MailService: cannot read the mails of {avatar}: {e}");
                return;
            }
        };
        let mut mails = Vec::new();
        for (key, val) in items {
            match parse_mail_key(&key) {
                Some((eid, id)) if eid == avatar => {
                    mails.push(Value::Array(vec![Value::Int(id), Value::Str(val)]))
                }
                _ => log::warn!("MailService: unexpected key {key:?} in the mails of {avatar}"),
            }
        }
        ctx.call(avatar, "OnGetMails", args![last, Value::Array(mails)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_keys_round_trip_with_the_service_prefix() {
        let eid = EntityId::parse("WVKLioYW8i5wAAD9").unwrap();
        let key = mail_key(20969, &eid);
        assert_eq!(key, "MailService:mail$WVKLioYW8i5wAAD9$0000020969");
        assert_eq!(parse_mail_key(&key), Some((eid, 20969)));
        assert_eq!(
            parse_mail_key(&mail_key(END_MAIL_ID, &eid)),
            Some((eid, END_MAIL_ID))
        );
        // GoWorld's old layout, and garbage, are not mail keys.
        assert_eq!(parse_mail_key("mail$WVKLioYW8i5wAAD9$0000020969"), None);
        assert_eq!(parse_mail_key("MailService:mail$WVKLioYW8i5wAAD9$x"), None);
        assert_eq!(parse_mail_key("MailService:lastMailID"), None);
        // Keys sort by mail ID within one target.
        assert!(mail_key(9, &eid) < mail_key(10, &eid));
        assert!(mail_key(10, &eid) < mail_key(END_MAIL_ID, &eid));
    }

    #[test]
    fn a_mail_is_gos_msgpack_map_in_hex() {
        let m = Outgoing {
            sender: EntityId::parse("WVKLioYW8i5wAAD9").unwrap(),
            sender_name: "n".into(),
            target: EntityId::parse("WVKLioYW8i5wAAD8").unwrap(),
            data: Value::Map(vec![(Value::Str("a".into()), Value::Int(1))]).to_bytes(),
        };
        let h = pack_mail(&m);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let bytes: Vec<u8> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect();
        let v = goworld_common::msgpack::decode_exact(&bytes).unwrap();
        assert_eq!(
            v.map_get("senderID").and_then(Value::as_str),
            Some("WVKLioYW8i5wAAD9")
        );
        assert_eq!(
            v.map_get("data").and_then(|d| d.map_get("a")),
            Some(&Value::Int(1))
        );
    }
}

//! Resource identifiers: a short type prefix and a lowercase ULID.
//!
//! ULIDs sort by creation time, which is what makes the id itself a stable
//! pagination cursor (lists are Redis sorted sets read with `ZRANGEBYLEX`).

pub const ENDPOINT: &str = "ep_";
pub const SUBSCRIPTION: &str = "sub_";
pub const EVENT: &str = "evt_";
pub const DELIVERY: &str = "dlv_";
pub const API_KEY: &str = "key_";
pub const PORTAL_SESSION: &str = "ps_";
/// An endpoint incarnation ([`crate::model::EndpointRecord::generation`]).
pub const GENERATION: &str = "gen_";

pub fn new_id(prefix: &str) -> String {
    id_from_bits(prefix, ulid::Ulid::generate().into())
}

/// A publish call's name in a Redis Cluster's partition step marks (see
/// `stored_event`): random, so the calls of every registry replica stay
/// apart.
pub fn new_publish_call() -> u64 {
    rand::random()
}

/// Bits of a delivery id's ULID randomness that carry its partition.
const PARTITION_BITS: u32 = 16;
const RANDOM_BITS: u32 = 80;

/// A delivery id that also names its partition (in the top bits of the
/// ULID's randomness), so a delivery's records are found from its id alone
/// when they are spread over partitions. Still a ULID: it sorts by creation.
pub fn new_delivery_id(partition: u32) -> String {
    delivery_id_made_at(partition, crate::time_fmt::now_millis())
}

/// A [`new_delivery_id`] whose time is `ms`: a replayed delivery takes its
/// event's publish time, so it sorts and is found with the event's others.
pub fn delivery_id_made_at(partition: u32, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let random: u128 = rand::random::<u128>() & ((1u128 << (RANDOM_BITS - PARTITION_BITS)) - 1);
    let random = random | (u128::from(partition & 0xffff) << (RANDOM_BITS - PARTITION_BITS));
    id_from_bits(DELIVERY, ulid::Ulid::from_parts(ms, random).into())
}

/// The partition a [`new_delivery_id`] id names.
pub fn delivery_partition(id: &str) -> Option<u32> {
    let random = ulid_bits(id.strip_prefix(DELIVERY)?)? & ((1u128 << RANDOM_BITS) - 1);
    u32::try_from(random >> (RANDOM_BITS - PARTITION_BITS)).ok()
}

/// Ids chosen by callers (tenant ids, event ids, event type names) are limited
/// to characters that are safe inside Redis key names and URLs.
pub fn is_valid_external_id(id: &str, max_len: usize) -> bool {
    !id.is_empty()
        && id.len() <= max_len
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// Creation time of an id made by [`new_id`] (the ULID's timestamp), in ms.
pub fn created_millis(id: &str) -> Option<i64> {
    ulid_bits(id).and_then(|bits| i64::try_from(bits >> 80).ok())
}

/// The 128 bits of the ULID an id made by [`new_id`] ends with (its 26
/// digits after the last `_`, in either case). Read digit by digit: ids
/// are read on every delivery's way.
pub fn ulid_bits(id: &str) -> Option<u128> {
    let digits = id.rsplit('_').next()?;
    decode_digits(digits.as_bytes(), &ANY_CASE_VALUE)
}

/// [`ulid_bits`] of digits spelled as [`id_from_bits`] spells them:
/// lowercase only, so that the id made again from the bits is the same.
pub fn canonical_ulid_bits(digits: &[u8]) -> Option<u128> {
    decode_digits(digits, &LOWERCASE_VALUE)
}

/// The id with `prefix` whose ULID is `bits`, spelled as [`new_id`] spells
/// it: the inverse of [`ulid_bits`] for canonical ids.
pub fn id_from_bits(prefix: &str, bits: u128) -> String {
    let mut id = String::with_capacity(prefix.len() + ULID_DIGITS);
    id.push_str(prefix);
    for place in (0..ULID_DIGITS).rev() {
        id.push(char::from(CROCKFORD[((bits >> (5 * place)) & 31) as usize]));
    }
    id
}

const ULID_DIGITS: usize = 26;
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Each lowercase Crockford base32 digit's value, by byte (`0xff`: none).
const LOWERCASE_VALUE: [u8; 256] = digit_values(false);
/// The same for digits of either case.
const ANY_CASE_VALUE: [u8; 256] = digit_values(true);

const fn digit_values(uppercase_too: bool) -> [u8; 256] {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < CROCKFORD.len() {
        table[CROCKFORD[i] as usize] = i as u8;
        if uppercase_too {
            table[CROCKFORD[i].to_ascii_uppercase() as usize] = i as u8;
        }
        i += 1;
    }
    table
}

/// 26 digits whose first is at most `7` (so they hold 128 bits).
fn decode_digits(digits: &[u8], values: &[u8; 256]) -> Option<u128> {
    if digits.len() != ULID_DIGITS || values[usize::from(digits[0])] > 7 {
        return None;
    }
    let mut bits = 0u128;
    for digit in digits {
        let value = values[usize::from(*digit)];
        if value > 31 {
            return None;
        }
        bits = (bits << 5) | u128::from(value);
    }
    Some(bits)
}

/// The smallest id with `prefix` created at or after `ms`: a lexicographic
/// lower bound for "created since" range reads over ids.
pub fn floor_id(prefix: &str, ms: i64) -> String {
    id_from_bits(prefix, ulid::Ulid::from_parts(u64::try_from(ms).unwrap_or(0), 0).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_know_when_they_were_made() {
        let before = crate::time_fmt::now_millis();
        let id = new_id(DELIVERY);
        let at = created_millis(&id).unwrap();
        assert!(at >= before && at <= crate::time_fmt::now_millis());
        assert!(floor_id(DELIVERY, at) <= id);
        assert!(floor_id(DELIVERY, at + 1) > id);
        assert_eq!(created_millis("dlv_not-a-ulid"), None);
        assert_eq!(ulid_bits(&id).map(|bits| (bits >> 80) as i64), Some(at));
        assert_eq!(ulid_bits("dlv_not-a-ulid"), None);
    }

    #[test]
    fn ulids_read_and_spell_as_the_ulid_crate_does() {
        for n in 0..500u32 {
            let ulid = ulid::Ulid::from_parts(u64::from(n) * 7_919_113, rand::random::<u128>());
            let bits = u128::from(ulid);
            let spelled = format!("ep_{}", ulid.to_string().to_ascii_lowercase());
            assert_eq!(id_from_bits(ENDPOINT, bits), spelled);
            assert_eq!(ulid_bits(&spelled), Some(bits));
            assert_eq!(ulid_bits(&format!("ep_{ulid}")), Some(bits), "uppercase reads too");
            assert_eq!(canonical_ulid_bits(&spelled.as_bytes()[3..]), Some(bits));
            assert_eq!(canonical_ulid_bits(ulid.to_string().as_bytes()), None, "uppercase is not canonical");
            assert_eq!(created_millis(&spelled), i64::try_from(ulid.timestamp_ms()).ok());
        }
        assert_eq!(id_from_bits(DELIVERY, u128::MAX), "dlv_7zzzzzzzzzzzzzzzzzzzzzzzzz");
        for refused in
            ["8zzzzzzzzzzzzzzzzzzzzzzzzz", "0zzzzzzzzzzzzzzzzzzzzzzzzu", "0123", "01m8ry9bqs9h9d9hw6b7j3w6nsx"]
        {
            assert_eq!(ulid_bits(refused), None, "{refused}");
        }
    }

    #[test]
    fn delivery_ids_name_their_partition() {
        for partition in [0, 1, 15, 4095] {
            let id = new_delivery_id(partition);
            assert_eq!(delivery_partition(&id), Some(partition), "{id}");
            assert!(created_millis(&id).is_some() && id.len() == 30);
        }
        assert_ne!(new_delivery_id(3), new_delivery_id(3));
        assert_eq!(delivery_partition("ep_01h0000000000000000000000"), None);
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = new_id(ENDPOINT);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(ENDPOINT);
        assert!(a < b);
        assert!(a.starts_with("ep_") && a.len() == 29);
    }

    #[test]
    fn external_ids_reject_key_separators() {
        assert!(is_valid_external_id("acme-1.prod", 64));
        assert!(!is_valid_external_id("a:b", 64));
        assert!(!is_valid_external_id("a b", 64));
        assert!(!is_valid_external_id("", 64));
        assert!(!is_valid_external_id(&"x".repeat(65), 64));
    }
}

//! Decoding of raw Redis replies that have no typed form in the client:
//! stream entry lists and the text of a reply value. A leaf: it imports
//! nothing of the dispatcher.

use redis::Value as RedisValue;

/// Reads an `XREADGROUP`/`XAUTOCLAIM` entry list: `[[id, [k, v, ...]], ...]`.
pub fn parse_entries(value: &RedisValue) -> Vec<(String, Vec<(String, String)>)> {
    let RedisValue::Array(items) = value else { return Vec::new() };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let RedisValue::Array(parts) = item else { continue };
        let (Some(id), Some(fields)) = (parts.first(), parts.get(1)) else { continue };
        let Some(id) = text(id) else { continue };
        let mut pairs = Vec::new();
        if let RedisValue::Array(flat) = fields {
            for kv in flat.chunks(2) {
                if let [k, v] = kv
                    && let (Some(k), Some(v)) = (text(k), text(v))
                {
                    pairs.push((k, v));
                }
            }
        }
        out.push((id, pairs));
    }
    out
}

pub fn text(value: &RedisValue) -> Option<String> {
    match value {
        RedisValue::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        RedisValue::SimpleString(s) => Some(s.clone()),
        RedisValue::VerbatimString { text, .. } => Some(text.clone()),
        RedisValue::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

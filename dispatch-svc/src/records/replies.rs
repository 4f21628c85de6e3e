//! Decoding of raw Redis replies that have no typed form in the client:
//! stream entry lists, the one stream of an `XREAD`/`XREADGROUP` answer
//! (and the blocking read both commands end with), and the text of a reply
//! value.

use std::time::Duration;

use herald_common::redis_conn::RedisConn;
use redis::Value as RedisValue;

use crate::error::DispatchError;

/// A stream entry: its id and its field/value pairs, in stream order.
pub type StreamEntry = (String, Vec<(String, String)>);

/// Reads an `XREADGROUP`/`XAUTOCLAIM` entry list: `[[id, [k, v, ...]], ...]`.
/// Takes the reply so that each string moves out of it rather than being
/// copied: a read batch is every delivery's first step.
pub fn parse_entries(value: RedisValue) -> Vec<StreamEntry> {
    let RedisValue::Array(items) = value else { return Vec::new() };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let RedisValue::Array(parts) = item else { continue };
        let mut parts = parts.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else { continue };
        let Some(id) = into_text(id) else { continue };
        let mut pairs = Vec::new();
        if let RedisValue::Array(flat) = fields {
            pairs.reserve(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                if let (Some(k), Some(v)) = (into_text(k), into_text(v)) {
                    pairs.push((k, v));
                }
            }
        }
        out.push((id, pairs));
    }
    out
}

/// The entries of the one stream in an `XREAD`/`XREADGROUP` answer (a RESP2
/// array of `[name, entries]` pairs or a RESP3 map); none for a timeout.
pub fn stream_entries(value: RedisValue) -> Vec<StreamEntry> {
    let items = match value {
        RedisValue::Array(items) => items,
        RedisValue::Map(pairs) => {
            return pairs.into_iter().next().map(|(_, entries)| parse_entries(entries)).unwrap_or_default();
        }
        _ => return Vec::new(),
    };
    let Some(RedisValue::Array(stream)) = items.into_iter().next() else { return Vec::new() };
    stream.into_iter().nth(1).map(parse_entries).unwrap_or_default()
}

/// Ends `read` (an `XREAD` or `XREADGROUP` with its group arguments) with
/// `COUNT count BLOCK block STREAMS stream after`, runs it, and reads the
/// stream's entries.
pub async fn blocking_read(
    mut read: redis::Cmd,
    conn: &mut RedisConn,
    count: usize,
    block: Duration,
    stream: &str,
    after: &str,
) -> Result<Vec<StreamEntry>, DispatchError> {
    read.arg("COUNT").arg(count).arg("BLOCK").arg(block.as_millis() as u64).arg("STREAMS").arg(stream).arg(after);
    let value: RedisValue = read.query_async(conn).await?;
    Ok(stream_entries(value))
}

/// [`text`] of a reply value that is not needed afterwards, without a copy.
fn into_text(value: RedisValue) -> Option<String> {
    match value {
        RedisValue::BulkString(bytes) => String::from_utf8(bytes).ok(),
        RedisValue::SimpleString(s) => Some(s),
        other => text(&other),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_xreadgroup_answers() {
        let entry = |id: &str| {
            RedisValue::Array(vec![
                RedisValue::BulkString(id.as_bytes().to_vec()),
                RedisValue::Array(vec![
                    RedisValue::BulkString(b"d".to_vec()),
                    RedisValue::BulkString(b"dlv_1".to_vec()),
                ]),
            ])
        };
        let answer = RedisValue::Array(vec![RedisValue::Array(vec![
            RedisValue::BulkString(b"h:{p0}:jobs".to_vec()),
            RedisValue::Array(vec![entry("1-0"), entry("2-0")]),
        ])]);
        let entries = stream_entries(answer);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0, "2-0");
        assert_eq!(entries[0].1, vec![("d".to_owned(), "dlv_1".to_owned())]);
        assert!(stream_entries(RedisValue::Nil).is_empty());
    }
}

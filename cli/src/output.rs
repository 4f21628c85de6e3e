//! Printing answers: `--output json` prints the API's JSON untouched (one
//! object, or an array for lists); tables pick a few columns per resource
//! for people.

use std::io::{ErrorKind, Write};

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

use crate::options::Output;

/// A column: its heading and the field it shows (dotted for nested fields).
pub type Column = (&'static str, &'static str);

/// The text of a field for a table cell: strings bare, `null` as `-`, the rest as JSON.
pub fn cell(item: &Value, path: &str) -> String {
    let value = path.split('.').try_fold(item, |v, key| v.get(key));
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
        }
        Some(other) => other.to_string(),
    }
}

fn table() -> Table {
    let mut table = Table::new();
    table.load_style(NOTHING).set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// Writes a line to standard output. A reader that went away (`| head`)
/// ends the command quietly, as it does for other Unix tools.
pub fn line(text: impl std::fmt::Display) {
    bytes(format!("{text}\n").as_bytes());
}

/// Writes to standard output, as [`line`] does.
pub fn bytes(data: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(data).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

pub fn json(value: &Value) {
    line(serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// A list: a table of `columns`, or the JSON array of the items.
pub fn list(output: Output, items: &[Value], columns: &[Column]) {
    match output {
        Output::Json => json(&Value::Array(items.to_vec())),
        Output::Table => {
            if items.is_empty() {
                eprintln!("(none)");
                return;
            }
            let mut t = table();
            t.set_header(columns.iter().map(|(heading, _)| *heading));
            for item in items {
                t.add_row(columns.iter().map(|(_, path)| cell(item, path)));
            }
            line(t);
        }
    }
}

/// One object: every field on its own line, or the JSON object.
pub fn one(output: Output, item: &Value) {
    match (output, item) {
        (Output::Table, Value::Object(fields)) => {
            let mut t = table();
            for (name, _) in fields {
                t.add_row([name.clone(), cell(item, name)]);
            }
            line(t);
        }
        _ => json(item),
    }
}

/// A confirmation for people; JSON output prints nothing (the API answered no body).
pub fn done(output: Output, message: &str) {
    if output == Output::Table {
        line(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_show_text_plainly() {
        let item = json!({"id": "ep_1", "n": 3, "auth": {"type": "basic"}, "types": ["a", "b"], "gone": null});
        assert_eq!(cell(&item, "id"), "ep_1");
        assert_eq!(cell(&item, "n"), "3");
        assert_eq!(cell(&item, "auth.type"), "basic");
        assert_eq!(cell(&item, "types"), "a,b");
        assert_eq!(cell(&item, "gone"), "-");
        assert_eq!(cell(&item, "missing.deeper"), "-");
    }
}

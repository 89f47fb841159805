//! Output of listing commands: an aligned table for people, JSON for scripts.

use clap::ValueEnum;
use serde_json::Value;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Prints rows (objects with the given columns) as a table or as a JSON array.
pub fn print(format: Format, columns: &[&str], rows: &[Value]) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into())
        ),
        Format::Table => print!("{}", table(columns, rows)),
    }
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

pub fn table(columns: &[&str], rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r.get(*c))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let padded: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
    for r in cells {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            serde_json::json!({"name": "default", "rp_id": "localhost"}),
            serde_json::json!({"name": "acme-eu", "rp_id": null}),
        ];
        assert_eq!(
            table(&["name", "rp_id"], &rows),
            "NAME     RP_ID\ndefault  localhost\nacme-eu  -\n"
        );
    }
}

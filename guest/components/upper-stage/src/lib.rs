//! A pipeline stage component in Rust: uppercases the utf8 column `text` and adds an int64
//! column `chars` (its length in characters). A batch without `text` is refused with
//! `err(...)`, which makes it a dead letter.

wit_bindgen::generate!({
    world: "stage-component",
    path: "../../../wit/pipeline",
});

use exports::wasmlink::pipeline::stage::Guest;
use wasmlink::pipeline::types::{Batch, Column, ColumnData};

struct Upper;

impl Guest for Upper {
    fn process(input: Batch) -> Result<Batch, String> {
        let mut columns = Vec::with_capacity(input.columns.len() + 1);
        let mut chars = None;
        for column in input.columns {
            match (column.name.as_str(), column.data) {
                ("text", ColumnData::Utf8(values)) => {
                    chars = Some(
                        values
                            .iter()
                            .map(|v| v.as_ref().map(|s| s.chars().count() as i64))
                            .collect(),
                    );
                    let upper = values
                        .into_iter()
                        .map(|v| v.map(|s| s.to_uppercase()))
                        .collect();
                    columns.push(Column {
                        name: column.name,
                        data: ColumnData::Utf8(upper),
                    });
                }
                ("text", _) => return Err("column `text` must be utf8".into()),
                (_, data) => columns.push(Column {
                    name: column.name,
                    data,
                }),
            }
        }
        let chars = chars.ok_or_else(|| "no column `text`".to_string())?;
        columns.push(Column {
            name: "chars".into(),
            data: ColumnData::Int64(chars),
        });
        Ok(Batch { columns })
    }
}

export!(Upper);

//! Merging a date partition's files (the data side of `compact`; the
//! commit side is `archive::compact_date`).

use std::path::{Path, PathBuf};

use super::parquet::{read_file, write_file, ArchiveRow};

/// Merges `inputs` into files of at most `max_rows` rows, written to the
/// paths `make_temp(i)` gives; returns (path, rows, bytes) per output. Rows
/// keep their order; at most about `max_rows` rows are held in memory
/// beyond one input file.
pub fn merge_files(
    inputs: &[PathBuf],
    max_rows: usize,
    make_temp: &mut dyn FnMut(usize) -> PathBuf,
) -> anyhow::Result<Vec<(PathBuf, u64, u64)>> {
    let mut outputs = Vec::new();
    let mut pending: Vec<ArchiveRow> = Vec::new();
    let mut flush = |rows: &mut Vec<ArchiveRow>, outputs: &mut Vec<(PathBuf, u64, u64)>| -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let path = make_temp(outputs.len());
        let bytes = write_file(&path, rows)?;
        outputs.push((path, rows.len() as u64, bytes));
        rows.clear();
        Ok(())
    };
    for input in inputs {
        let mut rows = read_file(Path::new(input))?;
        while !rows.is_empty() {
            let room = max_rows - pending.len();
            let take = room.min(rows.len());
            pending.extend(rows.drain(..take));
            if pending.len() == max_rows {
                flush(&mut pending, &mut outputs)?;
            }
        }
    }
    flush(&mut pending, &mut outputs)?;
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};

    fn rows(from: u64, n: u64) -> Vec<ArchiveRow> {
        (from..from + n)
            .map(|i| ArchiveRow {
                event: Event {
                    event_id: Some(format!("e{i}").into()),
                    user_id: "u".into(),
                    product_id: "p".into(),
                    event_type: "view".into(),
                    kind: EventKind::View,
                    category: "c".into(),
                    session_id: None,
                    time: i as i64,
                    price: None,
                    quantity: None,
                },
                ingest_time: 0,
                partition: 0,
                position: i,
            })
            .collect()
    }

    #[test]
    fn merges_in_order_and_respects_max_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut inputs = Vec::new();
        let mut all = Vec::new();
        for (i, n) in [(0u64, 7u64), (7, 5), (12, 9)] {
            let p = dir.path().join(format!("in{i}.parquet"));
            write_file(&p, &rows(i, n)).unwrap();
            inputs.push(p);
            all.extend(rows(i, n));
        }
        let out = merge_files(&inputs, 8, &mut |i| dir.path().join(format!("out{i}.parquet"))).unwrap();
        assert_eq!(out.iter().map(|o| o.1).collect::<Vec<_>>(), vec![8, 8, 5]);
        let merged: Vec<ArchiveRow> = out.iter().flat_map(|o| read_file(&o.0).unwrap()).collect();
        assert_eq!(merged, all);
    }
}

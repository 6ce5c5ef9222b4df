//! The spool's own tests: order, a torn line, the cap, and two processes on one directory.

use serde_json::{json, Value};

use super::*;

#[test]
fn keeps_order_survives_reopening_and_drops_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    for i in 0..5 {
        assert_eq!(spool.append(&json!({ "n": i })).unwrap(), i + 1);
    }
    drop(spool);
    // A crash in the middle of a write leaves a line without its newline.
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(PENDING))
        .unwrap();
    f.write_all(br#"{"n": 99"#).unwrap();
    drop(f);

    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(spool.depth(), 5);
    spool.append(&json!({ "n": 5 })).unwrap();
    let lines = spool.pending::<Value>().unwrap();
    let got: Vec<Value> = lines.iter().filter_map(|l| l.entry.clone()).collect();
    assert_eq!(got, (0..6).map(|n| json!({ "n": n })).collect::<Vec<_>>());

    let first_four: Vec<Vec<u8>> = lines.into_iter().take(4).map(|l| l.raw).collect();
    spool.remove_replayed(&first_four).unwrap();
    spool.append(&json!({ "n": 6 })).unwrap();
    let lines = spool.pending::<Value>().unwrap();
    let got: Vec<Value> = lines.iter().filter_map(|l| l.entry.clone()).collect();
    assert_eq!(got, vec![json!({"n": 4}), json!({"n": 5}), json!({"n": 6})]);
    assert_eq!(spool.depth(), 3);
    let all: Vec<Vec<u8>> = lines.into_iter().map(|l| l.raw).collect();
    spool.remove_replayed(&all).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.view().bytes, 0);
}

#[test]
fn refuses_a_line_past_the_cap_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 30).unwrap();
    spool.append(&json!({ "n": "0123456789" })).unwrap();
    let err = spool.append(&json!({ "n": "0123456789" })).unwrap_err();
    assert!(matches!(err, SpoolError::Full { cap: 30, .. }), "{err}");
    assert_eq!(spool.depth(), 1, "the refused line is not kept");
}

fn values(spool: &Spool) -> Vec<Value> {
    spool
        .pending::<Value>()
        .unwrap()
        .into_iter()
        .filter_map(|l| l.entry)
        .collect()
}

/// Two processes on one directory (two opens: the OS lock is per open file): appends of
/// each land in the one file even after the other replaced it, and two replayers of the same
/// lines drop each line once, never one that neither has replayed.
#[test]
fn two_processes_share_a_spool_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = Spool::open(dir.path(), 1 << 20).unwrap();
    let b = Spool::open(dir.path(), 1 << 20).unwrap();
    for n in 0..3 {
        a.append(&json!({ "a": n })).unwrap();
        b.append(&json!({ "b": n })).unwrap();
    }
    assert_eq!(a.depth(), 6, "a sees b's lines");
    // Both read the same six lines to replay them.
    let seen_by_a: Vec<Vec<u8>> = a
        .pending::<Value>()
        .unwrap()
        .into_iter()
        .map(|l| l.raw)
        .collect();
    let seen_by_b: Vec<Vec<u8>> = b
        .pending::<Value>()
        .unwrap()
        .into_iter()
        .map(|l| l.raw)
        .collect();
    // B replays four and drops them; meanwhile A appends one more.
    b.remove_replayed(&seen_by_b[..4]).unwrap();
    a.append(&json!({ "a": 3 })).unwrap();
    // A replayed all six: it drops the two B left, and keeps its new line.
    a.remove_replayed(&seen_by_a).unwrap();
    assert_eq!(values(&b), vec![json!({ "a": 3 })]);
    // B, late, drops what it had replayed: nothing of it is left, and the new line stays.
    b.remove_replayed(&seen_by_b[..4]).unwrap();
    b.append(&json!({ "b": 3 })).unwrap();
    assert_eq!(values(&a), vec![json!({ "a": 3 }), json!({ "b": 3 })]);
    assert_eq!(a.depth(), 2);
    assert_eq!(b.depth(), 2);
}

//! A stats region as `netvm stats` reads it: arbitrary bytes (a scribbled or half-written
//! region), or a region laid out by `StatsWriter` and then partly overwritten with the input.
//!
//! Checks: `Snapshot::read` never panics; an accepted snapshot has no more entries than the
//! region can hold, names of at most 40 bytes and a component name of at most 32; on an
//! untouched writer's region it returns exactly what was published.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netvm_api::stats::{
    Snapshot, StatsWriter, COMPONENT_BYTES, ENTRY_BYTES, HEADER_BYTES, NAME_BYTES,
};
use sddf::shm::OwnedRegion;

netvm_api::counters! {
    /// Three counters.
    struct Three {
        /// a
        a: u64,
        /// b
        b: u64,
        /// c
        c: u64,
    }
}

fn accepted(s: &Snapshot, len: usize) {
    assert!(s.entries.len() <= (len - HEADER_BYTES) / ENTRY_BYTES);
    assert!(
        s.component.len() <= COMPONENT_BYTES * 3,
        "lossy decoding at most triples"
    );
    for (name, _) in &s.entries {
        assert!(name.len() <= NAME_BYTES * 3);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let len = (HEADER_BYTES + usize::from(mode & 0x3f) * 16).max(HEADER_BYTES);
    let mem = OwnedRegion::new(len.div_ceil(8) * 8);
    let r = mem.region();
    if mode & 0x80 == 0 {
        let n = rest.len().min(r.len()) / 8 * 8;
        let _ = r.write_words(0, &rest[..n]);
        if let Ok(s) = Snapshot::read(&r) {
            accepted(&s, r.len());
        }
        return;
    }
    // A real layout, published, then the input written over part of it.
    let Ok(mut w) = StatsWriter::new(r, "fuzzed") else {
        return;
    };
    let groups = (mode & 0x3) as usize;
    let mut ok = true;
    for g in 0..groups {
        ok &= w.group::<Three>(format_args!("g{g}")).is_ok();
    }
    w.finish();
    let values: Vec<u64> = (0..w.entries() as u64).map(|i| i * 7 + 1).collect();
    w.publish(values.iter().copied());
    if rest.is_empty() {
        let s = Snapshot::read(&r).expect("a writer's own region reads back");
        if ok {
            assert_eq!(s.entries.iter().map(|e| e.1).collect::<Vec<_>>(), values);
        }
        return;
    }
    let at = usize::from(rest[0]) * 8 % r.len();
    let n = (rest.len() - 1).min(r.len() - at) / 8 * 8;
    let _ = r.write_words(at, &rest[1..1 + n]);
    if let Ok(s) = Snapshot::read(&r) {
        accepted(&s, r.len());
    }
});

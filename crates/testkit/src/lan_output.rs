//! Checks of `netvm lan`'s output that the host-mode test (netvm/tests/lan.rs) and the seL4 one
//! (tests/pipeline/tests/sel4_lan.rs) share: a node pair's line of the node-to-node matrix, and
//! the messages table. They read the text `netvm lan` prints, so they panic (test failures) with
//! the whole output when a line is missing or wrong.

/// (good UDP echoes, bad UDP and TCP echoes, mean RTT in µs) of the pair line
/// `node <from> -> node <to> (<ip>, from client1): <r> rounds, UDP <e> echoed <l> lost <b> bad
/// ..., RTT min/avg/max <a>/<b>/<c> us; TCP <t> bytes echoed <tb> bad ...`.
pub fn pair_counts(stdout: &str, from: u8, to: u8) -> (u64, u64, u64) {
    let start = format!("node {from} -> node {to} (");
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&start) && l.contains(" rounds, UDP "))
        .unwrap_or_else(|| panic!("no line for node {from} -> node {to}:\n{stdout}"));
    let number_before = |word: &str| -> u64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|i| words.get(i.checked_sub(1)?))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no '{word}' count in {line}"))
    };
    let rtt = line
        .split("RTT min/avg/max ")
        .nth(1)
        .and_then(|r| r.split('/').nth(1))
        .and_then(|avg| avg.parse().ok())
        .unwrap_or_else(|| panic!("no RTT in {line}"));
    let tcp_bad = line
        .split("bytes echoed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|b| b.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no TCP counters in {line}"));
    (number_before("echoed"), number_before("bad") + tcp_bad, rtt)
}

/// The messages table of a run's output: every pair of nodes exchanged messages both ways,
/// each delivered (none lost) and received with verified content, and each node's `msg.id` is
/// its node id (so the ids are unique), none bad, the master gave out every id.
pub fn check_messages(stdout: &str, nodes: u8) {
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("node messages (rows: from, columns: to"))
        .unwrap_or_else(|| panic!("no messages table:\n{stdout}"));
    for node in 0..nodes {
        assert!(lines[at + 1].contains(&format!("node {node}")), "{stdout}");
    }
    for from in 0..nodes {
        let row = lines[at + 2 + usize::from(from)]
            .strip_prefix(&format!("node {from} "))
            .unwrap_or_else(|| panic!("no row of node {from}:\n{stdout}"));
        let mut words = row.split_whitespace();
        for to in 0..nodes {
            let cell = words.next().unwrap_or_else(|| panic!("short row: {row}"));
            if to == from {
                assert_eq!(cell, "-", "{row}");
                continue;
            }
            let (delivered, lost) = cell.split_once('/').expect("delivered/lost");
            let received: u64 = words.next().unwrap().parse().expect("received");
            let delivered: u64 = delivered.parse().unwrap();
            assert!(
                delivered > 0 && lost == "0" && received > 0,
                "node {from} -> node {to}: {delivered} delivered, {lost} lost, {received} received:\n{stdout}"
            );
        }
        let counters = format!("node {from} msg.*: id {from}, sent ");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&counters))
            .unwrap_or_else(|| panic!("no `{counters}`:\n{stdout}"));
        assert!(line.contains(", bad 0 ("), "{line}");
    }
    let ids: Vec<String> = (0..nodes).map(|n| n.to_string()).collect();
    assert!(
        stdout.contains(&format!("master gave out ids: {}\n", ids.join(", "))),
        "{stdout}"
    );
    assert!(!stdout.contains("MESSAGES FAILED"), "{stdout}");
}

//! The holdback (quire_holdback) on a real concurrent trace, in process: clownschool's updates
//! delivered out of causal order (the last agent's first, then the others round-robin, as
//! tests/out_of_order.rs sends them to a server) end at exactly `endContent`, nothing left
//! waiting; and a peer syncing midway (integrated state, then the unsettled updates) ends
//! there too.

use quire_holdback::Holdback;
use quire_tests::trace::load_trace_updates;
use quire_tests::trace_path;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Transact, Update};

fn doc() -> Doc {
    quire_backend::document::server_doc()
}

fn text(doc: &Doc) -> String {
    let txn = doc.transact();
    txn.get_text("content")
        .map(|t| t.get_string(&txn))
        .unwrap_or_default()
}

fn feed(doc: &Doc, holdback: &mut Holdback, bytes: &[u8]) {
    let update = Update::decode_v1(bytes).unwrap();
    holdback
        .apply(&mut doc.transact_mut(), bytes, update)
        .unwrap();
}

#[test]
fn clownschool_out_of_order_reaches_end_content() {
    let updates = load_trace_updates(trace_path("concurrent/clownschool.json.gz")).unwrap();
    let last = updates.num_agents - 1;
    let mut order: Vec<&[u8]> = updates.by_agent()[last].clone();
    order.extend(
        updates
            .round_robin()
            .into_iter()
            .filter(|(agent, _)| *agent != last)
            .map(|(_, u)| u),
    );
    let server = doc();
    let mut hb = Holdback::default();
    let mut peer = None;
    let mut most_held = 0;
    for (i, bytes) in order.iter().enumerate() {
        feed(&server, &mut hb, bytes);
        most_held = most_held.max(hb.held());
        if i % 500 == 0 {
            eprintln!(
                "{i}: held {} unsettled {}",
                hb.held(),
                hb.unsettled().count()
            );
        }
        if let Some((peer_doc, peer_hb)) = peer.as_mut() {
            feed(peer_doc, peer_hb, bytes);
        }
        if i == order.len() / 2 {
            // A peer joins: the integrated state, then what still waits, as it came.
            let peer_doc = doc();
            let mut peer_hb = Holdback::default();
            let state = server.transact().encode_diff_v1(&StateVector::default());
            feed(&peer_doc, &mut peer_hb, &state);
            let waiting = hb.unsettled_batched(64);
            for u in &waiting {
                feed(&peer_doc, &mut peer_hb, u);
            }
            peer = Some((peer_doc, peer_hb));
        }
    }
    assert!(most_held > 0, "the order held updates back");
    assert!(hb.is_empty(), "left waiting: {}", hb.describe());
    assert_eq!(text(&server), updates.end_content);
    let (peer_doc, peer_hb) = peer.unwrap();
    assert!(
        peer_hb.is_empty(),
        "peer left waiting: {}",
        peer_hb.describe()
    );
    assert_eq!(text(&peer_doc), updates.end_content);
}

/// One client far ahead of another while a bundle waits: agent 1's updates wait (in yrs, or
/// held behind their own pending predecessors) for agent 0's, which come last. Only bundles
/// need the merge fallback, so it must not run per arrival: before that was so, a plain
/// client's echo (a bundle) made the server re-merge thousands of waiting updates on every
/// update and stall (tests/out_of_order.rs, 1 run in ~10).
#[test]
fn a_waiting_bundle_does_not_make_every_arrival_merge() {
    let updates = load_trace_updates(trace_path("concurrent/clownschool.json.gz")).unwrap();
    let by_agent = updates.by_agent();
    let server = doc();
    let mut hb = Holdback::default();
    for bytes in &by_agent[2] {
        feed(&server, &mut hb, bytes);
    }
    // A bundle with a hole: two of agent 2's updates far apart, as a peer that got both
    // (and neither's predecessors) sends them back in its sync reply.
    let bundle = Update::merge_updates([
        Update::decode_v1(by_agent[2][100]).unwrap(),
        Update::decode_v1(by_agent[2][5000]).unwrap(),
    ]);
    let bundle = yrs::updates::encoder::Encode::encode_v1(&bundle);
    feed(&server, &mut hb, &bundle);
    assert!(
        hb.unsettled().count() > by_agent[2].len() / 2,
        "agent 2's updates wait for the others"
    );
    for (n, bytes) in by_agent[1].iter().chain(&by_agent[0]).enumerate() {
        feed(&server, &mut hb, bytes);
        assert!(
            hb.merges() <= 10,
            "{} merges of waiting updates after {} arrivals",
            hb.merges(),
            n + 1
        );
    }
    assert_eq!(text(&server), updates.end_content);
    assert!(hb.is_empty(), "left waiting: {} updates", hb.held());
}

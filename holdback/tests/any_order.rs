//! The holdback against the naive model: a multi-client editing history (inserts and deletes,
//! each client seeing the others' changes at random moments, so updates depend across clients)
//! delivered in ANY order, with resends, ends exactly where in-order delivery ends; and a peer
//! that syncs from the half-delivered document (integrated state, then the waiting updates)
//! and then gets the rest converges too. (ASCII text: positions here are yrs offsets; the
//! simulation in tests/ covers multi-byte text.)

use proptest::prelude::*;
use quire_holdback::{Delivery, Holdback};
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, GetString, Options, ReadTxn, StateVector, Text, Transact, Update};

fn doc(client: u64) -> Doc {
    Doc::with_options(Options {
        client_id: ClientID::new(client),
        skip_gc: true,
        ..Options::default()
    })
}

fn text(doc: &Doc) -> String {
    doc.get_or_insert_text("t").get_string(&doc.transact())
}

#[derive(Debug, Clone)]
enum Step {
    /// Client `who` inserts at a position picked by `at`.
    Insert {
        who: usize,
        at: u32,
        s: &'static str,
    },
    /// Client `who` deletes up to 3 chars at a position picked by `at`.
    Delete { who: usize, at: u32, len: u32 },
    /// Client `to` receives everything `from` has.
    Sync { from: usize, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, any::<u32>(), prop::sample::select(vec!["a", "bc", "xyz", "\n"]))
            .prop_map(|(who, at, s)| Step::Insert { who, at, s }),
        2 => (0..3usize, any::<u32>(), 1..4u32).prop_map(|(who, at, len)| Step::Delete { who, at, len }),
        2 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

/// Runs the history; returns every update the clients made, in the order they made them.
fn history(steps: &[Step]) -> Vec<Vec<u8>> {
    let clients: Vec<Doc> = (1..=3).map(doc).collect();
    let mut updates = Vec::new();
    for step in steps {
        match step {
            Step::Insert { who, at, s } => {
                let d = &clients[*who];
                let t = d.get_or_insert_text("t");
                let mut txn = d.transact_mut();
                let len = t.len(&txn);
                t.insert(&mut txn, at % (len + 1), s);
                updates.push(txn.encode_update_v1());
            }
            Step::Delete { who, at, len } => {
                let d = &clients[*who];
                let t = d.get_or_insert_text("t");
                let mut txn = d.transact_mut();
                let total = t.len(&txn);
                if total == 0 {
                    continue;
                }
                let start = at % total;
                t.remove_range(&mut txn, start, (*len).min(total - start));
                updates.push(txn.encode_update_v1());
            }
            Step::Sync { from, to } if from != to => {
                let sv = clients[*to].transact().state_vector();
                let diff = clients[*from].transact().encode_diff_v1(&sv);
                clients[*to]
                    .transact_mut()
                    .apply_update(Update::decode_v1(&diff).unwrap())
                    .unwrap();
            }
            Step::Sync { .. } => {}
        }
    }
    updates
}

fn deliver(target: &Doc, hb: &mut Holdback, bytes: &[u8]) -> Delivery {
    let update = Update::decode_v1(bytes).unwrap();
    hb.apply(&mut target.transact_mut(), bytes, update).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_order_ends_where_in_order_delivery_ends(
        steps in prop::collection::vec(step(), 1..40),
        order_seed in any::<u64>(),
        resend_every in 2..7usize,
        batch in 1..4usize,
    ) {
        let updates = history(&steps);
        let reference = doc(9);
        for u in &updates {
            reference.transact_mut().apply_update(Update::decode_v1(u).unwrap()).unwrap();
        }
        // A permutation from the seed, plus resends of every `resend_every`-th update.
        let mut order: Vec<usize> = (0..updates.len()).collect();
        let mut x = order_seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let resends: Vec<usize> = order.iter().copied().step_by(resend_every).collect();
        order.extend(resends);

        let target = doc(7);
        let mut hb = Holdback::default();
        let mut peer: Option<(Doc, Holdback)> = None;
        for (n, &i) in order.iter().enumerate() {
            deliver(&target, &mut hb, &updates[i]);
            if let Some((p, phb)) = peer.as_mut() {
                deliver(p, phb, &updates[i]);
            }
            if n == order.len() / 2 {
                let p = doc(8);
                let mut phb = Holdback::default();
                let state = target.transact().encode_diff_v1(&StateVector::default());
                deliver(&p, &mut phb, &state);
                for u in hb.unsettled_batched(batch) {
                    deliver(&p, &mut phb, &u);
                }
                peer = Some((p, phb));
            }
        }
        prop_assert!(hb.is_empty(), "left waiting: {}", hb.describe());
        prop_assert_eq!(text(&target), text(&reference));
        prop_assert_eq!(target.transact().state_vector(), reference.transact().state_vector());
        if let Some((p, phb)) = peer {
            prop_assert!(phb.is_empty(), "peer left waiting: {}", phb.describe());
            prop_assert_eq!(text(&p), text(&reference));
        }
    }
}

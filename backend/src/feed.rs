//! Committed versions of documents, for whoever waits on them: the change feed's long polls and
//! event streams (`api::changes`) and the webhooks (`webhooks`).
//!
//! An actor reports its document's version after every round's commit ([`Feed::committed`]);
//! waiters subscribe to a document and wake when its version passes theirs. A document open on
//! another server reports nothing here, so waiters also read the store now and then: this is a
//! hint that shortens the wait, never the only way to learn of a change.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// See the module docs.
#[derive(Default)]
pub struct Feed {
    docs: Mutex<HashMap<String, watch::Sender<i64>>>,
}

impl Feed {
    /// Document `id` has committed everything up to `version`.
    pub fn committed(&self, id: &str, version: i64) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = docs.get(id) else { return };
        if tx.receiver_count() == 0 {
            docs.remove(id);
            return;
        }
        tx.send_if_modified(|held| {
            let newer = version > *held;
            if newer {
                *held = version;
            }
            newer
        });
    }

    /// Wakes on every version of `id` committed on this server from now on.
    pub fn subscribe(&self, id: &str) -> watch::Receiver<i64> {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        docs.entry(id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_newer_versions_only_and_senders_are_dropped_with_them() {
        let feed = Feed::default();
        feed.committed("d", 3); // nobody waits: nothing kept
        assert!(feed.docs.lock().unwrap().is_empty());
        let mut rx = feed.subscribe("d");
        feed.committed("d", 2);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 2);
        feed.committed("d", 2);
        feed.committed("d", 1);
        assert!(!rx.has_changed().unwrap());
        feed.committed("d", 5);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 5);
        drop(rx);
        feed.committed("d", 6);
        assert!(feed.docs.lock().unwrap().is_empty());
    }
}

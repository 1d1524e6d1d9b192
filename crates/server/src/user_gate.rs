//! One password verification in flight per username; the others wait their turn.
//!
//! This is what bounds parallel guesses at one name: the lockout counts each check
//! as it starts, and with checks of one name taken in turn, the `max_failures`-th
//! wrong one locks the name before the next starts. A right password is never
//! refused for the company it arrives in: the checks before it were either right
//! (and forgot the failures) or wrong (and count, as they should). A waiter usually
//! finds the credential cache filled by the check it waited for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The gates of the usernames being checked now. An entry lives only while a check
/// holds or awaits it, so the table is bounded by the requests in flight.
#[derive(Debug, Default)]
pub struct UserGates {
    gates: Mutex<HashMap<String, Gate>>,
}

/// A username's lock and how many requests hold or await it.
#[derive(Debug, Default)]
struct Gate {
    lock: Arc<AsyncMutex<()>>,
    users: usize,
}

/// The turn of one request at one username, held until dropped.
pub struct Turn<'a> {
    gates: &'a UserGates,
    name: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl UserGates {
    /// An empty table.
    pub fn new() -> Self {
        UserGates::default()
    }

    /// Waits until no other request checks `name`, then holds its turn.
    pub async fn enter(&self, name: &str) -> Turn<'_> {
        let lock = {
            let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            let gate = gates.entry(name.to_string()).or_default();
            gate.users += 1;
            gate.lock.clone()
        };
        // The turn is counted before waiting, so that a request cancelled while it
        // waits still takes itself out of the table.
        let mut turn = Turn {
            gates: self,
            name: name.to_string(),
            guard: None,
        };
        turn.guard = Some(lock.lock_owned().await);
        turn
    }

    /// How many usernames have a check in flight or waiting.
    pub fn len(&self) -> usize {
        self.gates.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no check is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut gates = self.gates.gates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gate) = gates.get_mut(&self.name) {
            gate.users -= 1;
            if gate.users == 0 {
                gates.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_turn_per_name_and_the_table_empties() {
        let gates = Arc::new(UserGates::new());
        let first = gates.enter("alice").await;
        // Another name is not held up.
        drop(gates.enter("bob").await);
        // The same name waits.
        let g = gates.clone();
        let waiter = tokio::spawn(async move {
            let _turn = g.enter("alice").await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "second check of alice must wait");
        drop(first);
        waiter.await.unwrap();
        assert!(gates.is_empty(), "entries leave with their last holder");

        // A waiter cancelled while waiting leaves no entry behind.
        let held = gates.enter("carol").await;
        let g = gates.clone();
        let waiter = tokio::spawn(async move {
            let _turn = g.enter("carol").await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        assert!(gates.is_empty());
    }
}

//! The guarantees every backend's [`ResidentKeyStore`] keeps, run through the same
//! [`StoreHarness`] as the lifecycle checks: a backend whose store also keeps resident keys adds
//! [`resident_key_store_conformance_tests!`](crate::resident_key_store_conformance_tests).
//!
//! Checks use residents with fresh random references, but count and list generations over the
//! whole table, so they expect a database that holds no other resident keys.

use std::sync::Arc;

use uuid::Uuid;

use super::lifecycle::StoreHarness;
use crate::{
    EventStore, ExpectedVersion, KeyToRewrap, NewResidentKey, ResidentKeyStore, RewrapError,
    RewrapRefused, StoreError, WrappedKey,
};

/// Instantiates one `#[tokio::test]` per resident-key check. `$fresh_harness` is as for
/// [`event_store_lifecycle_tests!`](crate::event_store_lifecycle_tests), and its store must also
/// be a [`ResidentKeyStore`].
#[macro_export]
macro_rules! resident_key_store_conformance_tests {
    ($fresh_harness:path) => {
        $crate::event_store_lifecycle_tests!(@each_in resident_keys, $fresh_harness;
            batch_inserts_keep_the_first_key_per_resident,
            a_rewrap_moves_every_key_or_none,
            forgetting_destroys_the_key_and_remembers_the_resident,
            keys_survive_close_and_reopen,
            concurrent_batches_store_one_key_per_resident,
            a_resident_with_a_key_is_refused_whole,
            concurrent_first_complaints_of_one_resident_store_one_key,
            servers_share_the_lease,
        );
    };
}

/// A harness whose store also keeps resident keys.
pub trait KeyStoreHarness: StoreHarness<Store: ResidentKeyStore> {}

impl<H> KeyStoreHarness for H
where
    H: StoreHarness,
    H::Store: ResidentKeyStore,
{
}

/// A reference no other check uses.
fn fresh_reference(name: &str) -> String {
    format!("{name}-{}", Uuid::new_v4().simple())
}

/// References no other check uses, one per name.
fn fresh_references<const N: usize>(names: [&str; N]) -> [String; N] {
    names.map(fresh_reference)
}

/// Stores `(reference, key)` pairs as one batch wrapped by `generation`.
async fn stored<S: ResidentKeyStore>(store: &S, pairs: &[(&str, &str)], generation: u32) {
    store
        .insert_keys(&rows(pairs), generation)
        .await
        .expect("the keys should be stored");
}

fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(reference, key)| ((*reference).to_owned(), (*key).to_owned()))
        .collect()
}

fn wrapped(key: &str, generation: u32) -> WrappedKey {
    WrappedKey {
        wrapped: key.to_owned(),
        generation,
    }
}

async fn key_of<S: ResidentKeyStore>(store: &S, reference: &str) -> Option<WrappedKey> {
    store
        .wrapped_key(reference)
        .await
        .expect("a stored key should be readable")
}

/// One statement stores a batch of new keys; the first row of a resident wins over a later one
/// in the same batch, a resident who has a key keeps it, the statement says which rows it
/// stored, and each key records the master key generation that wraps it.
pub async fn batch_inserts_keep_the_first_key_per_resident<H: KeyStoreHarness>(harness: H) {
    let store = harness.open(None).await;
    let [a, b, c] = fresh_references(["a", "b", "c"]);
    let mut inserted = store
        .insert_keys(&rows(&[(&a, "key-a1"), (&b, "key-b"), (&a, "key-a2")]), 1)
        .await
        .expect("the batch should be stored");
    inserted.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(inserted, expected, "each reference is reported once");
    assert_eq!(
        key_of(&store, &a).await,
        Some(wrapped("key-a1", 1)),
        "the first row of a resident in the batch is the one stored"
    );

    let inserted = store
        .insert_keys(&rows(&[(&a, "key-a3"), (&c, "key-c")]), 2)
        .await
        .expect("the second batch should be stored");
    assert_eq!(inserted, vec![c.clone()], "a resident with a key keeps it");
    assert_eq!(key_of(&store, &a).await, Some(wrapped("key-a1", 1)));
    assert_eq!(
        key_of(&store, &c).await,
        Some(wrapped("key-c", 2)),
        "each key records the master key generation that wraps it"
    );
    assert_eq!(key_of(&store, "nobody").await, None);
    assert_eq!(store.key_count().await.expect("countable"), 3);
    assert_eq!(store.generations_in_use().await.expect("readable"), [1, 2]);
    H::close(&store).await;
}

/// Appends numbered event `index` to `stream` (new) with `wrapped` as `reference`'s new key.
async fn append_keyed<S: ResidentKeyStore>(
    store: &S,
    stream: &crate::StreamId,
    index: usize,
    reference: &str,
    wrapped: &str,
) -> Result<crate::AppendOutcome, StoreError> {
    let key = NewResidentKey {
        reference: reference.to_owned(),
        wrapped: wrapped.to_owned(),
        generation: 1,
    };
    store
        .append_with_new_key(
            stream,
            ExpectedVersion::NoStream,
            vec![super::numbered_event(index)],
            key,
        )
        .await
}

/// A first complaint's events are appended with its resident's new key; a second resident's
/// complaint with a new key of its own is refused whole (`ResidentHasKey`) and leaves both the
/// key and the log as they were, so the caller can seal under the stored key and append again.
pub async fn a_resident_with_a_key_is_refused_whole<H: KeyStoreHarness>(harness: H) {
    let store = harness.open(None).await;
    let [resident] = fresh_references(["resident"]);
    let first = super::fresh_stream("complaint");
    let outcome = append_keyed(&store, &first, 1, &resident, "key-1")
        .await
        .expect("a new resident's key and events are stored");
    assert_eq!(outcome.version, 1);
    assert_eq!(key_of(&store, &resident).await, Some(wrapped("key-1", 1)));
    let head = store.head_position().await.expect("readable");

    let second = super::fresh_stream("complaint");
    let refused = append_keyed(&store, &second, 2, &resident, "key-2").await;
    assert!(
        matches!(refused, Err(StoreError::ResidentHasKey)),
        "a resident with a key keeps it: {refused:?}"
    );
    assert_eq!(key_of(&store, &resident).await, Some(wrapped("key-1", 1)));
    assert!(
        store
            .read_stream(&second, 0, 10)
            .await
            .expect("readable")
            .is_empty(),
        "nothing sealed under the refused key reaches the log"
    );
    assert_eq!(store.head_position().await.expect("readable"), head);
    H::close(&store).await;
}

/// Many first complaints of one new resident at once: one stores its key and its events, every
/// other is refused with nothing appended, and the stored key is the winner's.
pub async fn concurrent_first_complaints_of_one_resident_store_one_key<H: KeyStoreHarness>(
    harness: H,
) {
    const COMPLAINTS: usize = 16;
    let store = Arc::new(harness.open(None).await);
    let [resident] = fresh_references(["resident"]);
    let mut tasks = tokio::task::JoinSet::new();
    for complaint in 0..COMPLAINTS {
        let store = Arc::clone(&store);
        let resident = resident.clone();
        tasks.spawn(async move {
            let stream = super::fresh_stream("complaint");
            let key = format!("key-{complaint}");
            let result = append_keyed(store.as_ref(), &stream, complaint, &resident, &key).await;
            (key, stream, result)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (key, stream, result) = joined.expect("an append task panicked");
        let stored = store.read_stream(&stream, 0, 10).await.expect("readable");
        match result {
            Ok(_) => {
                assert_eq!(stored.len(), 1, "the winner's event is stored");
                winners.push(key);
            }
            Err(StoreError::ResidentHasKey) => {
                assert!(stored.is_empty(), "a refused complaint appended nothing")
            }
            Err(error) => panic!("unexpected failure: {error}"),
        }
    }
    assert_eq!(winners.len(), 1, "one complaint stores the resident's key");
    assert_eq!(
        key_of(store.as_ref(), &resident).await,
        Some(wrapped(&winners[0], 1)),
        "the stored key is the winner's"
    );
    H::close(&store).await;
}

/// The caller's refusal of one key, as a rotation's would be.
#[derive(Debug, thiserror::Error)]
#[error("the key of {0} does not open")]
struct Unopenable(String);

/// A re-wrap moves every key or none: one the caller refuses leaves them all as they were, and
/// the caller hears its own refusal back.
pub async fn a_rewrap_moves_every_key_or_none<H: KeyStoreHarness>(harness: H) {
    let store = harness.open(None).await;
    let [a, b, c] = fresh_references(["a", "b", "c"]);
    stored(&store, &[(&a, "key-a"), (&b, "key-b")], 1).await;
    stored(&store, &[(&c, "key-c")], 2).await;

    let refusing = |row: &KeyToRewrap| -> Result<String, RewrapRefused> {
        if row.reference == c {
            return Err(Unopenable(row.reference.clone()).into());
        }
        Ok(format!("{}-rewrapped", row.key.wrapped))
    };
    let failed = store.rewrap_all(3, &refusing).await;
    let Err(RewrapError::Refused(refusal)) = failed else {
        panic!("a refused key should stop the re-wrap: {failed:?}");
    };
    assert!(
        refusal.downcast_ref::<Unopenable>().is_some(),
        "the caller hears its own refusal: {refusal}"
    );
    assert_eq!(store.generations_in_use().await.expect("readable"), [1, 2]);
    assert_eq!(key_of(&store, &a).await, Some(wrapped("key-a", 1)));

    let rewrap = |row: &KeyToRewrap| -> Result<String, RewrapRefused> {
        Ok(format!("{}-rewrapped", row.key.wrapped))
    };
    let moved = store
        .rewrap_all(3, &rewrap)
        .await
        .expect("the re-wrap should commit");
    assert_eq!(moved, 3);
    assert_eq!(store.generations_in_use().await.expect("readable"), [3]);
    assert_eq!(
        key_of(&store, &b).await,
        Some(wrapped("key-b-rewrapped", 3))
    );
    let again = store
        .rewrap_all(3, &rewrap)
        .await
        .expect("a second re-wrap should commit");
    assert_eq!(
        again, 0,
        "keys already wrapped by the target stay as they are"
    );
    assert_eq!(
        key_of(&store, &b).await,
        Some(wrapped("key-b-rewrapped", 3))
    );
    H::close(&store).await;
}

/// Forgetting deletes the key and records the resident, once; other residents keep theirs, and
/// a resident forgotten before they had a key is remembered too.
pub async fn forgetting_destroys_the_key_and_remembers_the_resident<H: KeyStoreHarness>(
    harness: H,
) {
    let store = harness.open(None).await;
    let [gone, staying, keyless] = fresh_references(["gone", "staying", "keyless"]);
    stored(&store, &[(&gone, "key-gone"), (&staying, "key-staying")], 1).await;
    assert!(!store.is_forgotten(&gone).await.expect("readable"));

    assert!(
        store.forget(&gone).await.expect("forgotten"),
        "the resident had a key"
    );
    assert_eq!(key_of(&store, &gone).await, None, "the key is destroyed");
    assert!(store.is_forgotten(&gone).await.expect("readable"));
    assert!(
        !store.forget(&gone).await.expect("forgotten again"),
        "a second erasure finds no key"
    );
    assert!(store.is_forgotten(&gone).await.expect("readable"));

    assert_eq!(
        key_of(&store, &staying).await,
        Some(wrapped("key-staying", 1))
    );
    assert!(!store.is_forgotten(&staying).await.expect("readable"));

    assert!(!store.forget(&keyless).await.expect("forgotten"));
    assert!(
        store.is_forgotten(&keyless).await.expect("readable"),
        "a resident without a key is remembered as forgotten"
    );
    assert_eq!(store.key_count().await.expect("countable"), 1);
    H::close(&store).await;
}

/// Keys stored in batches (which commit without a flush of their own) and erasures are there
/// after the store is closed and opened again.
pub async fn keys_survive_close_and_reopen<H: KeyStoreHarness>(harness: H) {
    let [kept, forgotten] = fresh_references(["kept", "forgotten"]);
    let store = harness.open(None).await;
    stored(&store, &[(&kept, "key-kept"), (&forgotten, "key-gone")], 4).await;
    store.forget(&forgotten).await.expect("forgotten");
    H::close(&store).await;

    let reopened = harness.open(None).await;
    assert_eq!(key_of(&reopened, &kept).await, Some(wrapped("key-kept", 4)));
    assert_eq!(key_of(&reopened, &forgotten).await, None);
    assert!(reopened.is_forgotten(&forgotten).await.expect("readable"));
    H::close(&reopened).await;
}

/// Batches racing to store a key for the same resident store exactly one, and every batch
/// reports only the rows it stored.
pub async fn concurrent_batches_store_one_key_per_resident<H: KeyStoreHarness>(harness: H) {
    const BATCHES: usize = 16;
    let store = Arc::new(harness.open(None).await);
    let shared = fresh_reference("shared");
    let mut tasks = tokio::task::JoinSet::new();
    for batch in 0..BATCHES {
        let store = Arc::clone(&store);
        let shared = shared.clone();
        tasks.spawn(async move {
            let own = fresh_reference("own");
            let key = format!("key-{batch}");
            let rows = rows(&[(&shared, &key), (&own, &key)]);
            let inserted = store.insert_keys(&rows, 1).await.expect("stored");
            (key, inserted.contains(&shared), inserted.len())
        });
    }
    let mut winners = Vec::new();
    let mut stored = 0;
    while let Some(joined) = tasks.join_next().await {
        let (key, won, count) = joined.expect("a batch task panicked");
        stored += count;
        if won {
            winners.push(key);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "one batch stores the shared resident's key"
    );
    assert_eq!(
        stored,
        BATCHES + 1,
        "each batch stores its own resident's key"
    );
    assert_eq!(
        key_of(store.as_ref(), &shared).await,
        Some(wrapped(&winners[0], 1)),
        "the stored key is the one its batch reported"
    );
    H::close(&store).await;
}

/// Several servers (replicas, or a server and its `doorstep migrate`) may hold the shared
/// lease at once, and let go of it when dropped.
pub async fn servers_share_the_lease<H: KeyStoreHarness>(harness: H) {
    let first = harness.open(None).await;
    let second = harness.open(None).await;
    let one = first.server_lease().await.expect("a server's lease");
    let other = second.server_lease().await.expect("another server's lease");
    drop((one, other));
    first.server_lease().await.expect("the lease again");
    H::close(&first).await;
    H::close(&second).await;
}

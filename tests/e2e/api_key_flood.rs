//! A guessing flood of API keys from one address: guesses are throttled (refused unchecked with
//! `RESOURCE_EXHAUSTED` once the address has presented too many bad keys), while a valid key from
//! that same address keeps working: after the flood, after the key file changed, and after the
//! server restarted (when it has never seen the key before the flood).

use doorstep_api::v1;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_server::auth::Role;
use doorstep_server::auth::api_keys::{self, CreatedKey};
use doorstep_server::auth::client::CallerCredential;
use doorstep_tests::{TestApp, spawn_app_configured};
use secrecy::ExposeSecret;
use tonic::Code;

/// The server's default: bad keys an address may present in a minute before it is throttled.
const BAD_KEYS_PER_MINUTE: u32 = 20;

async fn app() -> TestApp {
    spawn_app_configured(|settings| {
        settings.limits.failed_api_keys_per_minute = BAD_KEYS_PER_MINUTE;
    })
    .await
}

fn create_key(app: &TestApp, name: &str) -> CreatedKey {
    // The server notices a change of the key file by its modification time, whose granularity
    // may be coarse: make sure this change is a new time.
    std::thread::sleep(std::time::Duration::from_millis(20));
    api_keys::create(
        &app.settings().auth.api_keys_file,
        name,
        &[Role::Intake],
        None,
    )
    .expect("a key is created")
}

/// Calls `ListContractors` from this test's address with `key`, returning the status code.
async fn call(app: &TestApp, key: &str) -> Code {
    let channel = CallerCredential::api_key(key)
        .expect("sendable")
        .attach(app.anonymous_channel.clone());
    ContractorServiceClient::new(channel)
        .list_contractors(v1::ListContractorsRequest::default())
        .await
        .map_or_else(|status| status.code(), |_| Code::Ok)
}

/// 25 wrong secrets from this address (for a key id that exists, the strongest guess there
/// is): the first ones are refused as bad, the rest refused unchecked.
async fn flood(app: &TestApp, key_id: &str) {
    let mut refused = 0;
    let mut throttled = 0;
    for guess in 0..25 {
        match call(app, &format!("dsk_{key_id}_guess-number-{guess}")).await {
            Code::Unauthenticated => refused += 1,
            Code::ResourceExhausted => throttled += 1,
            other => panic!("a guess was answered {other:?}"),
        }
    }
    assert!(
        refused <= BAD_KEYS_PER_MINUTE && throttled >= 5,
        "refused {refused}, throttled {throttled}"
    );
    assert_eq!(
        call(app, &format!("dsk_{key_id}_one-more-guess")).await,
        Code::ResourceExhausted,
        "guessing stays throttled"
    );
}

#[tokio::test]
async fn a_key_in_use_keeps_working_during_a_guessing_flood_from_its_address() {
    let app = app().await;
    let in_use = create_key(&app, "call-centre");
    let never_used = create_key(&app, "work-orders");
    let in_use_key = in_use.key.expose_secret();
    assert_eq!(call(&app, in_use_key).await, Code::Ok);
    flood(&app, &in_use.id).await;
    assert_eq!(call(&app, in_use_key).await, Code::Ok);
    assert_eq!(
        call(&app, never_used.key.expose_secret()).await,
        Code::Ok,
        "a valid key is recognised without argon2, even one this server has not seen yet"
    );
    flood(&app, &never_used.id).await;
}

#[tokio::test]
async fn a_key_in_use_keeps_working_during_a_flood_after_the_key_file_changed() {
    let app = app().await;
    let in_use = create_key(&app, "call-centre");
    let in_use_key = in_use.key.expose_secret();
    assert_eq!(call(&app, in_use_key).await, Code::Ok);
    let other = create_key(&app, "work-orders");
    api_keys::revoke(&app.settings().auth.api_keys_file, &other.id).expect("revoked");
    flood(&app, &in_use.id).await;
    assert_eq!(call(&app, in_use_key).await, Code::Ok);
    assert_eq!(
        call(&app, other.key.expose_secret()).await,
        Code::ResourceExhausted,
        "a revoked key is not accepted, and from a throttled address not even checked"
    );
}

#[tokio::test]
async fn a_key_in_use_keeps_working_during_a_flood_after_a_restart() {
    let app = app().await;
    let in_use = create_key(&app, "call-centre");
    let in_use_key = in_use.key.expose_secret().to_owned();
    assert_eq!(call(&app, &in_use_key).await, Code::Ok);
    let app = app.restart().await;
    flood(&app, &in_use.id).await;
    assert_eq!(
        call(&app, &in_use_key).await,
        Code::Ok,
        "the restarted server recognises the key without having verified it before the flood"
    );
}

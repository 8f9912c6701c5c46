//! Health reflects reality: a server whose PostgreSQL becomes unreachable says NOT_SERVING (so a
//! load balancer stops sending it calls) while liveness stays SERVING (so an orchestrator does not
//! restart it for the database's sake), and says SERVING again once the database is back.
//!
//! The database is cut off the way a network partition does it: the server reaches PostgreSQL
//! through a TCP relay in this test, which drops every connection and refuses new ones.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use doorstep_tests::spawn_app_on_database;
use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A TCP relay to PostgreSQL that can be cut and restored.
struct Relay {
    port: u16,
    target: (String, u16),
    running: Mutex<Option<JoinSet<()>>>,
}

impl Relay {
    async fn start(target: (String, u16)) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port for the relay");
        let port = listener.local_addr().expect("the relay's address").port();
        let relay = Arc::new(Self {
            port,
            target,
            running: Mutex::new(None),
        });
        relay.serve(listener).await;
        relay
    }

    async fn serve(&self, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        let target = self.target.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect((target.0.as_str(), target.1)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        *self.running.lock().await = Some(tasks);
    }

    /// Drops every relayed connection and refuses new ones.
    async fn cut(&self) {
        if let Some(mut tasks) = self.running.lock().await.take() {
            // Aborting the accept loop drops the listener and, with it, every connection task.
            tasks.shutdown().await;
        }
    }

    /// Listens again on the same port.
    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the relay's port is free again");
        self.serve(listener).await;
    }
}

async fn status(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> i32 {
    health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health answers whatever the database does")
        .into_inner()
        .status
}

/// Polls until `service` reports `expected`, for up to 20 s.
async fn wait_for(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
    expected: ServingStatus,
) {
    for _ in 0..200 {
        if status(health, service).await == expected as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "health of `{service}` did not become {expected:?}; it is {}",
        status(health, service).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_postgresql_is_unreachable_and_serving_when_it_returns() {
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    let options = PgConnectOptions::from_str(database.url()).expect("a PostgreSQL URL");
    let target = (options.get_host().to_owned(), options.get_port());
    let relay = Relay::start(target.clone()).await;
    let relayed_url = database.url().replacen(
        &format!("{}:{}", target.0, target.1),
        &format!("127.0.0.1:{}", relay.port),
        1,
    );
    assert_ne!(
        relayed_url,
        database.url(),
        "the server goes through the relay"
    );

    let app = spawn_app_on_database(&relayed_url).await;
    let mut health = HealthClient::new(app.anonymous_channel.clone());
    assert_eq!(status(&mut health, "").await, ServingStatus::Serving as i32);

    relay.cut().await;
    wait_for(&mut health, "", ServingStatus::NotServing).await;
    assert_eq!(
        status(&mut health, "doorstep.v1.ComplaintService").await,
        ServingStatus::NotServing as i32,
        "each service follows the database too"
    );
    assert_eq!(
        status(&mut health, doorstep_server::startup::LIVENESS_SERVICE).await,
        ServingStatus::Serving as i32,
        "the process is alive all the same"
    );

    relay.restore().await;
    wait_for(&mut health, "", ServingStatus::Serving).await;
    wait_for(
        &mut health,
        "doorstep.v1.ComplaintService",
        ServingStatus::Serving,
    )
    .await;

    // And the server works again: a complaint is logged and read back.
    let logged = app
        .client
        .clone()
        .log_complaint(doorstep_tests::gate_left_open(
            "health-after-outage",
            "2026-03-02T09:00:00Z",
        ))
        .await
        .expect("the server takes complaints again once the database is back")
        .into_inner();
    assert!(!logged.complaint_id.is_empty());
}

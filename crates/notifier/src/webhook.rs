//! Webhook deliveries: a signed JSON POST to each configured URL.

use std::collections::HashMap;
use std::time::Duration;

use doorstep_projections::Delivery;
use secrecy::{ExposeSecret, SecretString};

use crate::DeliveryError;
use crate::signature::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign};

/// Posts deliveries to webhooks, signing each with the URL's secret.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    secrets: HashMap<String, SecretString>,
}

impl WebhookSender {
    /// `webhooks` pairs each URL with its shared secret; `timeout` bounds one attempt.
    pub fn new(
        webhooks: impl IntoIterator<Item = (String, SecretString)>,
        timeout: Duration,
    ) -> Result<Self, DeliveryError> {
        // reqwest is built on rustls without a default crypto provider; ring is the one this
        // build carries. Installing it twice (a second server in one process) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("doorstep/", env!("CARGO_PKG_VERSION")))
            // A signed body goes only to the configured URL: a redirect is a failed try.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| DeliveryError::Http(error.to_string()))?;
        Ok(Self {
            client,
            secrets: webhooks.into_iter().collect(),
        })
    }

    /// The body a receiver gets: the escalation with the delivery id in it.
    pub fn body(delivery: &Delivery) -> Vec<u8> {
        let mut body = delivery.body.clone();
        if let Some(object) = body.as_object_mut() {
            object.insert(
                "delivery_id".to_owned(),
                serde_json::Value::from(delivery.delivery_id.to_string()),
            );
        }
        body.to_string().into_bytes()
    }

    /// One attempt: any 2xx answer is success.
    pub async fn send(&self, delivery: &Delivery) -> Result<(), DeliveryError> {
        let secret = self
            .secrets
            .get(&delivery.target)
            .ok_or_else(|| DeliveryError::NotConfigured(format!("webhook {}", delivery.target)))?;
        let body = Self::body(delivery);
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(secret.expose_secret().as_bytes(), timestamp, &body);
        let event = delivery
            .body
            .get("type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("escalation.raised")
            .to_owned();
        let response = self
            .client
            .post(&delivery.target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, delivery.delivery_id.to_string())
            .header(EVENT_HEADER, event)
            .body(body)
            .send()
            .await
            // reqwest's top-level message says little ("error sending request"); the causes say why.
            .map_err(|error| DeliveryError::Http(doorstep_telemetry::error_chain(&error)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}

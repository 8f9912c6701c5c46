//! What the service tells its operators: a span and a measurement per call (`rpc`), health that
//! follows the database (`health`), gauges sampled from the log and read models (`gauges`), how
//! long the working-day calendar still covers (`calendar`), and the Prometheus scrape endpoint on
//! its own port (`scrape`).

pub mod calendar;
pub mod gauges;
pub mod health;
pub mod rpc;
pub mod scrape;

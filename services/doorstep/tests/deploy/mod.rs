//! Reading the deployment files as their engines would, for `deploy_files.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::ValueEnum;
use doorstep_server::Settings;
use doorstep_server::settings::Role;
use saphyr::{LoadableYamlNode, YamlOwned};

pub mod compose;
pub mod dockerfile;
pub mod kubernetes;

/// The API replicas the deployments intend, beside one notifier.
pub const API_REPLICAS: i64 = 2;

/// The settings that hold secrets: a deployment must take them from a secret store, never
/// spell them out.
pub const SECRET_VARIABLES: [&str; 3] = [
    "DOORSTEP__DATABASE__URL",
    "DOORSTEP__PRIVACY__MASTER_KEY",
    "DOORSTEP__AUTH__JWT_HS256_SECRET",
];

pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(repository().join(relative))
        .unwrap_or_else(|error| panic!("cannot read {relative}: {error}"))
}

pub fn yaml_documents(relative: &str) -> Vec<YamlOwned> {
    YamlOwned::load_from_str(&read(relative))
        .unwrap_or_else(|error| panic!("{relative} is not YAML: {error}"))
}

pub fn yaml(relative: &str) -> YamlOwned {
    let mut documents = yaml_documents(relative);
    assert_eq!(documents.len(), 1, "{relative} holds one document");
    documents.remove(0)
}

/// `node.a.b.c`, or a panic naming the path.
pub fn at<'a>(node: &'a YamlOwned, path: &str) -> &'a YamlOwned {
    path.split('.').fold(node, |node, key| {
        node.as_mapping_get(key)
            .unwrap_or_else(|| panic!("no `{key}` in `{path}`"))
    })
}

pub fn get<'a>(node: &'a YamlOwned, path: &str) -> Option<&'a YamlOwned> {
    path.split('.')
        .try_fold(node, |node, key| node.as_mapping_get(key))
}

/// A scalar as the text an engine would hand the process.
pub fn text(node: &YamlOwned) -> String {
    if let Some(text) = node.as_str() {
        return text.to_owned();
    }
    if let Some(number) = node.as_integer() {
        return number.to_string();
    }
    if let Some(flag) = node.as_bool() {
        return flag.to_string();
    }
    panic!("not a scalar: {node:?}")
}

pub fn strings(node: &YamlOwned) -> Vec<String> {
    node.as_vec()
        .unwrap_or_else(|| panic!("not a list: {node:?}"))
        .iter()
        .map(text)
        .collect()
}

pub fn sequence(node: &YamlOwned) -> &[YamlOwned] {
    node.as_vec()
        .unwrap_or_else(|| panic!("not a list: {node:?}"))
}

pub fn port(node: &YamlOwned) -> u16 {
    node.as_integer()
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or_else(|| panic!("not a port: {node:?}"))
}

/// `http://host:port` → (host, port).
pub fn host_and_port(url: &str) -> (String, u16) {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/');
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url} names no port"));
    (
        host.to_owned(),
        port.parse()
            .unwrap_or_else(|error| panic!("{url}: {error}")),
    )
}

/// The settings a process gets from `environment` (its `DOORSTEP__…` variables) on top of
/// `file`, through the server's own loader.
pub fn load(
    file: Option<&Path>,
    environment: &BTreeMap<String, String>,
    context: &str,
) -> Settings {
    let doorstep = environment
        .iter()
        .filter(|(name, _)| name.starts_with("DOORSTEP__"))
        .map(|(name, value)| (name.clone(), value.clone()));
    Settings::load_from_environment(file, doorstep)
        .unwrap_or_else(|error| panic!("{context}: the settings do not load: {error}"))
}

/// The role a `doorstep` command line runs, parsed as the command line parses it, falling back
/// to `server.role`.
pub fn role(arguments: &[String], settings: &Settings, context: &str) -> Role {
    let flag = arguments
        .iter()
        .position(|argument| argument == "--role")
        .map(|index| {
            let value = arguments
                .get(index + 1)
                .unwrap_or_else(|| panic!("{context}: --role without a value"));
            Role::from_str(value, false)
                .unwrap_or_else(|error| panic!("{context}: --role {value}: {error}"))
        });
    flag.unwrap_or(settings.server.role)
}

/// Asks the real binary to parse `arguments` (with `--help`, so it stops there): clap refuses an
/// unknown subcommand, flag or role before it prints help.
pub fn assert_the_binary_accepts(arguments: &[String], context: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_doorstep"))
        .args(arguments)
        .arg("--help")
        .env_remove("DOORSTEP_CONFIG")
        .output()
        .unwrap_or_else(|error| panic!("the binary runs: {error}"));
    assert!(
        output.status.success(),
        "{context}: `doorstep {}` is refused: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What every container of a several-replica deployment needs, in Compose and Kubernetes alike:
/// the shared PostgreSQL database, the shared master key, and ports reachable from outside it.
pub fn assert_is_a_replica_on_postgres(settings: &Settings, context: &str) {
    assert!(
        settings.database.is_postgres(),
        "{context} runs on PostgreSQL"
    );
    assert!(
        settings.privacy.master_key.is_some(),
        "{context}: replicas sharing PostgreSQL must share privacy.master_key"
    );
    assert!(
        settings.server.host.is_unspecified(),
        "{context}: server.host"
    );
    assert!(
        settings.metrics.host.is_unspecified(),
        "{context}: metrics.host"
    );
}

pub fn port_of(node: &YamlOwned) -> u16 {
    port(at(node, "port"))
}

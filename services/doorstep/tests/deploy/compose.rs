//! `deploy/compose.yaml`, its `.env.example` and the collector configuration it mounts.

use std::collections::BTreeMap;

use base64::Engine;
use doorstep_server::Settings;
use doorstep_server::settings::{Role, TEST_JWT_SECRET};
use saphyr::YamlOwned;

use super::dockerfile::Dockerfile;
use super::{at, get, load, read, role, strings, text, yaml};

/// The variables deploy/.env.example declares, each with a value fit for a test in place of the
/// operator's secret.
pub fn compose_variables() -> BTreeMap<String, String> {
    read("deploy/.env.example")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            assert!(
                value.is_empty(),
                ".env.example sets {name}: it is an example, leave secrets out of git"
            );
            let stand_in = match name {
                "POSTGRES_PASSWORD" => "test-password".to_owned(),
                "DOORSTEP_MASTER_KEY" => {
                    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
                }
                "DOORSTEP_JWT_HS256_SECRET" => TEST_JWT_SECRET.to_owned(),
                other => panic!("teach this test a stand-in value for {other}"),
            };
            (name.to_owned(), stand_in)
        })
        .collect()
}

/// Compose's interpolation: `${NAME}`, `${NAME:?message}`, `${NAME:-default}`, `$$`.
pub fn interpolate(value: &str, variables: &BTreeMap<String, String>, context: &str) -> String {
    let mut result = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('$') {
        result.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(after) = after.strip_prefix('$') {
            result.push('$');
            rest = after;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            panic!("{context}: write ${{NAME}}, not a bare $ in {value}");
        };
        let end = inner
            .find('}')
            .unwrap_or_else(|| panic!("{context}: unclosed ${{ in {value}"));
        let expression = &inner[..end];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let (name, modifier) = expression.split_at(name_end);
        let substituted = match (variables.get(name), modifier) {
            (Some(value), _) => value.clone(),
            (None, modifier) if modifier.starts_with(":-") => modifier[2..].to_owned(),
            (None, _) => panic!("{context}: ${{{name}}} is not declared in deploy/.env.example"),
        };
        result.push_str(&substituted);
        rest = &inner[end + 1..];
    }
    result.push_str(rest);
    result
}

pub struct ComposeService {
    pub name: String,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub replicas: i64,
    pub settings: Settings,
    pub role: Role,
}

pub fn compose() -> YamlOwned {
    yaml("deploy/compose.yaml")
}

/// The services that run the Doorstep image, with the settings each process would load: the
/// image's environment, then the service's.
pub fn doorstep_services(compose: &YamlOwned) -> Vec<ComposeService> {
    let variables = compose_variables();
    let image_environment = Dockerfile::read().environment();
    let built_image = at(compose, "services")
        .as_mapping()
        .expect("services")
        .values()
        .find(|service| get(service, "build.dockerfile").is_some())
        .map(|service| text(at(service, "image")))
        .expect("a service builds deploy/Dockerfile");
    at(compose, "services")
        .as_mapping()
        .expect("services")
        .iter()
        .filter(|(_, service)| get(service, "image").map(text).as_deref() == Some(&built_image))
        .map(|(name, service)| {
            let name = text(name);
            let mut environment = image_environment.clone();
            for (variable, value) in at(service, "environment")
                .as_mapping()
                .unwrap_or_else(|| panic!("{name}: environment as a mapping"))
            {
                let value = interpolate(&text(value), &variables, &name);
                environment.insert(text(variable), value);
            }
            let command = get(service, "command").map(strings).unwrap_or_default();
            let replicas = get(service, "deploy.replicas").map_or(1, |replicas| {
                replicas.as_integer().expect("a replica count")
            });
            let settings = load(None, &environment, &name);
            let role = role(&command, &settings, &name);
            ComposeService {
                name,
                command,
                environment,
                replicas,
                settings,
                role,
            }
        })
        .collect()
}

/// `[host:]published[-range]:container[/tcp]` → the container port.
pub fn container_port(mapping: &str) -> u16 {
    let container = mapping.rsplit(':').next().unwrap_or(mapping);
    container
        .trim_end_matches("/tcp")
        .parse()
        .unwrap_or_else(|error| panic!("ports: {mapping}: {error}"))
}

pub fn service_node<'a>(compose: &'a YamlOwned, name: &str) -> &'a YamlOwned {
    get(compose, "services")
        .and_then(|services| services.as_mapping_get(name))
        .unwrap_or_else(|| panic!("compose has no service {name}"))
}

/// The collector's configuration file, found through the volume mounted where its `--config`
/// says.
pub fn collector_configuration(collector: &YamlOwned, name: &str) -> YamlOwned {
    let flag = strings(at(collector, "command"))
        .into_iter()
        .find_map(|argument| argument.strip_prefix("--config=").map(str::to_owned))
        .unwrap_or_else(|| panic!("{name}: command --config=…"));
    let source = strings(at(collector, "volumes"))
        .into_iter()
        .find_map(|volume| {
            let mut parts = volume.split(':');
            let source = parts.next()?.to_owned();
            (parts.next()? == flag).then_some(source)
        })
        .unwrap_or_else(|| panic!("{name}: no volume is mounted at {flag}"));
    let relative = source
        .strip_prefix("./")
        .unwrap_or_else(|| panic!("{name}: mount the configuration from deploy/"));
    yaml(&format!("deploy/{relative}"))
}
